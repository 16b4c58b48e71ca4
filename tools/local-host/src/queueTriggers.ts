// Storage queue triggers of a loaded app: each function's queue resolved and checked before the host serves, then one
// listener per function (see queue-listener.ts).
import type { LogLevel } from './coreApi';
import { resolveAppSettings } from './ncrontab';
import { resolveQueueConnection } from './queueConnection';
import type { RunningQueueListener } from './queueListener';
import { isValidQueueName, poisonQueueName, startQueueListener } from './queueListener';
import type { QueueTriggerOptions } from './queueOptions';
import { loadQueueTriggerOptions } from './queueOptions';
import type { InvocationInput, RegisteredFunction } from './registry';

export interface QueueTriggers {
  /** The functions and their resolved queues, for the start-up listing. */
  queues: { functionName: string; queueName: string }[];
  start(
    invoke: (functionName: string, input: InvocationInput) => Promise<unknown>,
    log: (level: LogLevel, functionName: string, message: string) => void,
  ): { stopFetching(): void; stop(drainMs: number): Promise<void> };
}

export const isQueueTrigger = (fn: RegisteredFunction): boolean => fn.triggerType.toLowerCase() === 'queuetrigger';

/** Resolves every queue trigger's queue name and connection; throws, naming the function, on anything unusable. */
export function prepareQueueTriggers(
  functions: RegisteredFunction[],
  appDir: string,
  env: NodeJS.ProcessEnv,
): QueueTriggers {
  const queueFunctions = functions.filter(isQueueTrigger);
  if (queueFunctions.length === 0) return { queues: [], start: () => ({ stopFetching() {}, stop: async () => {} }) };
  const options: QueueTriggerOptions = loadQueueTriggerOptions(appDir, env);
  const prepared = queueFunctions.map((fn) => {
    const where = `Function "${fn.name}" queueName`;
    let queueName: string;
    try {
      // As the host does: app settings resolved, then lower-cased, then checked against Azure's naming rules.
      queueName = resolveAppSettings(fn.queueName ?? '', env, where).toLowerCase();
    } catch (error) {
      const message = (error as Error).message;
      throw new Error(message.startsWith(where) ? message : `${where}: ${message}`);
    }
    if (!isValidQueueName(queueName)) {
      throw new Error(
        `${where} "${queueName}" is not a valid queue name (3-63 lower-case letters, digits and single hyphens).`,
      );
    }
    let connection;
    try {
      connection = resolveQueueConnection(fn.connection, env);
    } catch (error) {
      throw new Error(`Function "${fn.name}": ${(error as Error).message}`);
    }
    const poisonName = poisonQueueName(queueName);
    return {
      functionName: fn.name,
      queueName,
      queue: connection.client.getQueueClient(queueName),
      poisonQueue: poisonName === undefined ? undefined : connection.client.getQueueClient(poisonName),
    };
  });

  return {
    queues: prepared.map(({ functionName, queueName }) => ({ functionName, queueName })),
    start(invoke, log) {
      const listeners: RunningQueueListener[] = prepared.map((trigger) =>
        startQueueListener({
          ...trigger,
          options,
          invoke: (input) => invoke(trigger.functionName, input),
          log: (level, message) => log(level, trigger.functionName, message),
        }),
      );
      return {
        stopFetching: () => listeners.forEach((listener) => listener.stopFetching()),
        stop: async (drainMs) => {
          await Promise.all(listeners.map((listener) => listener.stop(drainMs)));
        },
      };
    },
  };
}
