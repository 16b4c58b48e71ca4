// Runs a storage queue trigger as the Functions host's queue extension does (Microsoft.Azure.WebJobs.Extensions.
// Storage.Queues QueueListener + QueueProcessor), so that what the app sees locally is what it sees in Azure:
// - receive up to batchSize messages, each leased (made invisible) for 10 minutes and renewed at half-time while its
//   function runs; fetch again once no more than newBatchThreshold are in flight;
// - an empty (or missing) queue backs polling off exponentially, randomised, from 100 ms up to maxPollingInterval;
//   a message found resets it;
// - success deletes the message; failure makes it visible again after visibilityTimeout, or, once it has been
//   dequeued maxDequeueCount times, copies it to `<queue>-poison` (created if missing) and deletes it. A message
//   already dequeued more often than that is moved without running the function. A queue whose name ends in
//   `-poison` has no poison queue: its failing messages stay invisible until their lease runs out, as in Azure;
// - with messageEncoding base64, a message that is not base64 goes straight to the poison queue.
// Two hosts on one queue share its messages through the leases alone, as instances do.
import type { QueueClient } from '@azure/storage-queue';
import type { RpcTypedData } from './coreApi';
import type { LogLevel } from './coreApi';
import type { QueueTriggerOptions } from './queueOptions';
import { minimumPollingIntervalMs } from './queueOptions';
import type { InvocationInput } from './registry';

export interface QueueListenerSettings {
  functionName: string;
  queueName: string;
  queue: QueueClient;
  /** Absent for a queue that is itself a poison queue (or whose poison queue name would be too long). */
  poisonQueue: QueueClient | undefined;
  options: QueueTriggerOptions;
  /** Runs the function; rejects when it failed. */
  invoke: (input: InvocationInput) => Promise<unknown>;
  log: (level: LogLevel, message: string) => void;
}

export interface RunningQueueListener {
  /** Stops fetching at once (synchronously), so no message is taken after a stop began. */
  stopFetching(): void;
  /** Stops fetching, then waits up to `drainMs` for the invocations in flight; messages of any left running reappear. */
  stop(drainMs: number): Promise<void>;
}

interface LeasedMessage {
  messageId: string;
  popReceipt: string;
  dequeueCount: number;
  messageText: string;
  insertedOn: Date;
  expiresOn: Date;
  nextVisibleOn: Date;
}

/** Azure queue names: 3-63 lower-case letters, digits and single hyphens, starting and ending alphanumeric. */
export function isValidQueueName(name: string): boolean {
  return /^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$/.test(name);
}

/** `<queue>-poison`, unless the queue is one already or the name would be too long (then there is none). */
export function poisonQueueName(queueName: string): string | undefined {
  if (queueName.endsWith('-poison')) return undefined;
  const name = `${queueName}-poison`;
  return isValidQueueName(name) ? name : undefined;
}

export function startQueueListener(settings: QueueListenerSettings): RunningQueueListener {
  const { functionName, queueName, queue, poisonQueue, options, log } = settings;
  const leaseSeconds = Math.round(options.leaseMs / 1000);
  const inFlight = new Set<Promise<void>>();
  const wakeUp = new AbortController();
  const stopped = new Promise<void>((resolve) => wakeUp.signal.addEventListener('abort', () => resolve()));
  let abandoned = false;
  const backOff = randomizedExponentialBackOff(minimumPollingIntervalMs, options.maxPollingIntervalMs);
  let foundSinceLastDelay = false;
  let queueExists: boolean | undefined;
  let reportedMissing = false;

  /** One receive; whether it found messages. Errors back off like an empty queue, as the listener does for 404s and 5xx. */
  const poll = async (): Promise<boolean> => {
    try {
      if (!queueExists) {
        queueExists = await queue.exists();
        if (!queueExists) {
          if (!reportedMissing) log('warning', `Queue '${queueName}' does not exist yet; polling until it does.`);
          reportedMissing = true;
          return false;
        }
        reportedMissing = false;
      }
      const { receivedMessageItems } = await queue.receiveMessages({
        numberOfMessages: options.batchSize,
        visibilityTimeout: leaseSeconds,
      });
      for (const item of receivedMessageItems) track(processMessage({ ...item }));
      return receivedMessageItems.length > 0;
    } catch (error) {
      queueExists = undefined;
      // The host rethrows errors other than "queue missing/being deleted" and 5xx (its listener then restarts);
      // locally one line says what went wrong and polling carries on.
      const transient = [404, 409].includes(statusOf(error)) || statusOf(error) >= 500 || statusOf(error) === 0;
      log(transient ? 'warning' : 'error', `Polling queue '${queueName}' failed: ${describeStorageError(error)}.`);
      return false;
    }
  };

  const track = (work: Promise<void>): void => {
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  };

  const fetching = (async () => {
    while (!wakeUp.signal.aborted) {
      if (await poll()) {
        foundSinceLastDelay = true;
        // Fetch again as soon as no more than newBatchThreshold messages are still being processed.
        while (inFlight.size > options.newBatchThreshold && !wakeUp.signal.aborted) {
          await Promise.race([...inFlight, stopped]);
        }
      } else {
        const delay = backOff(foundSinceLastDelay);
        foundSinceLastDelay = false;
        await sleep(delay, stopped);
      }
    }
  })();

  async function processMessage(message: LeasedMessage): Promise<void> {
    try {
      let text = message.messageText;
      if (options.messageEncoding === 'base64') {
        const decoded = decodeBase64(message.messageText);
        if (decoded === undefined) {
          log('warning', `Message '${message.messageId}' on '${queueName}' is not base64 (host.json messageEncoding).`);
          return await moveToPoisonQueue(message);
        }
        text = decoded;
      }
      if (message.dequeueCount > options.maxDequeueCount) return await moveToPoisonQueue(message);

      const lease = keepLeased(message);
      let succeeded = true;
      try {
        await settings.invoke(invocationInput(message, text));
      } catch {
        succeeded = false; // the registry has logged the failure
      }
      await lease.stop();
      if (lease.lost || abandoned) return;
      if (succeeded) await deleteMessage(message);
      else if (!poisonQueue)
        return; // nowhere to move it: it stays invisible until the lease runs out
      else if (message.dequeueCount >= options.maxDequeueCount) await moveToPoisonQueue(message);
      else await release(message);
    } catch (error) {
      log(
        'error',
        `Completing message '${message.messageId}' on '${queueName}' failed: ${describeStorageError(error)}.`,
      );
    }
  }

  function invocationInput(message: LeasedMessage, text: string): InvocationInput {
    // Binding data as the host sends it: strings as strings, everything else JSON-serialised (Json.NET writes a
    // DateTimeOffset as ISO 8601 with an offset); @azure/functions camel-cases the names.
    const when = (date: Date): RpcTypedData => ({
      json: JSON.stringify(date.toISOString().replace('.000Z', 'Z').replace(/Z$/, '+00:00')),
    });
    return {
      trigger: { string: text },
      triggerMetadata: {
        QueueTrigger: { string: text },
        DequeueCount: { json: String(message.dequeueCount) },
        ExpirationTime: when(message.expiresOn),
        Id: { string: message.messageId },
        InsertionTime: when(message.insertedOn),
        NextVisibleTime: when(message.nextVisibleOn),
        PopReceipt: { string: message.popReceipt },
      },
      reason: `New queue message detected on '${queueName}'.`,
      details:
        `Trigger Details: MessageId: ${message.messageId}, DequeueCount: ${message.dequeueCount}, ` +
        `InsertedOn: ${message.insertedOn.toISOString()}`,
    };
  }

  /** Renews the message's invisibility at half its lease while the function runs; the pop receipt changes each time. */
  function keepLeased(message: LeasedMessage): { stop(): Promise<void>; readonly lost: boolean } {
    const normalMs = options.leaseMs / 2;
    const fastestMs = Math.min(60_000, normalMs);
    let delayMs = normalMs;
    let lost = false;
    let ended = false;
    let renewing: Promise<void> = Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const schedule = (): void => {
      timer = setTimeout(() => {
        renewing = renew().finally(() => {
          if (!ended && !lost && !abandoned) schedule();
        });
      }, delayMs);
    };
    const renew = async (): Promise<void> => {
      try {
        const receipt = await queue.updateMessage(message.messageId, message.popReceipt, undefined, leaseSeconds);
        message.popReceipt = receipt.popReceipt ?? message.popReceipt;
        message.nextVisibleOn = receipt.nextVisibleOn ?? message.nextVisibleOn;
        delayMs = normalMs;
      } catch (error) {
        if (isOwnershipLost(error)) {
          lost = true;
          log('warning', `Lost the lease on message '${message.messageId}' on '${queueName}' while it was processed.`);
        } else {
          delayMs = Math.max(delayMs / 2, fastestMs); // try again sooner, before the lease runs out
          log(
            'warning',
            `Renewing the lease on message '${message.messageId}' failed: ${describeStorageError(error)}.`,
          );
        }
      }
    };
    schedule();
    return {
      async stop() {
        ended = true;
        clearTimeout(timer);
        await renewing; // the delete or release needs the newest pop receipt
      },
      get lost() {
        return lost;
      },
    };
  }

  async function deleteMessage(message: LeasedMessage): Promise<void> {
    try {
      await queue.deleteMessage(message.messageId, message.popReceipt);
    } catch (error) {
      if (!isOwnershipLost(error)) throw error; // someone else owns it now, or it is gone: theirs to finish
    }
  }

  async function release(message: LeasedMessage): Promise<void> {
    try {
      await queue.updateMessage(
        message.messageId,
        message.popReceipt,
        undefined,
        Math.floor(options.visibilityTimeoutMs / 1000),
      );
    } catch (error) {
      if (!isOwnershipLost(error)) throw error;
    }
  }

  async function moveToPoisonQueue(message: LeasedMessage): Promise<void> {
    if (!poisonQueue) return;
    log(
      'warning',
      `Message has reached MaxDequeueCount of ${options.maxDequeueCount}. Moving message to queue '${poisonQueue.name}'.`,
    );
    // The raw text goes over as it came, so a base64 message stays base64 (and one that was not stays as it was).
    try {
      await poisonQueue.sendMessage(message.messageText);
    } catch (error) {
      if (statusOf(error) !== 404) throw error;
      await poisonQueue.createIfNotExists();
      await poisonQueue.sendMessage(message.messageText);
    }
    await deleteMessage(message);
  }

  const stopFetching = (): void => wakeUp.abort();
  return {
    stopFetching,
    async stop(drainMs) {
      stopFetching();
      const deadline = Date.now() + drainMs;
      const timeLeft = (): Promise<void> => sleep(Math.max(0, deadline - Date.now()));
      await Promise.race([fetching, timeLeft()]);
      const drained = await Promise.race([
        Promise.allSettled([...inFlight]).then(() => true),
        timeLeft().then(() => false),
      ]);
      if (!drained) {
        abandoned = true;
        log(
          'warning',
          `${inFlight.size} invocation(s) of ${functionName} still running after ${drainMs} ms; their messages ` +
            'reappear on the queue once their leases run out.',
        );
      }
    },
  };
}

/** The listener's RandomizedExponentialBackoffStrategy: min + (±20%) min·2^(n-1), capped at max; reset on success. */
function randomizedExponentialBackOff(minMs: number, maxMs: number): (foundMessages: boolean) => number {
  let currentMs = 0;
  let exponent = 0;
  return (foundMessages) => {
    if (foundMessages) {
      currentMs = minMs;
      exponent = 1;
    } else if (currentMs !== maxMs) {
      let next = minMs;
      if (exponent > 0) next += (0.8 + Math.random() * 0.4) * 2 ** (exponent - 1) * minMs;
      if (next < maxMs) {
        currentMs = next;
        exponent++;
      } else {
        currentMs = maxMs;
      }
    }
    return currentMs;
  };
}

/** Strict base64 (the .NET decoder also skips whitespace); undefined when it is not. */
function decodeBase64(text: string): string | undefined {
  const compact = text.replace(/[\s]/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) return undefined;
  return Buffer.from(compact, 'base64').toString('utf8');
}

function sleep(ms: number, interrupt?: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([elapsed, ...(interrupt ? [interrupt] : [])]).finally(() => clearTimeout(timer));
}

function statusOf(error: unknown): number {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : 0;
}

/** 400 PopReceiptMismatch or 404 (message or queue gone): the message is no longer ours to touch. */
function isOwnershipLost(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return statusOf(error) === 404 || (statusOf(error) === 400 && code === 'PopReceiptMismatch');
}

/** Status and storage error code only: SDK errors carry the request, whose headers hold credentials. */
function describeStorageError(error: unknown): string {
  const status = statusOf(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (status === 0) return error instanceof Error ? `${error.name}: ${error.message.split('\n')[0]}` : String(error);
  return `${status}${typeof code === 'string' ? ` ${code}` : ''}`;
}
