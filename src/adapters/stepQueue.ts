// Hub step messages on an Azure Storage queue of the app's own storage account, where the Functions host's queue
// trigger (hubSteps) picks them up. Messages are JSON, base64-encoded as the host expects by default
// (host.json extensions.queues.messageEncoding).
import type { TokenCredential } from '@azure/core-auth';
import { isRestError } from '@azure/core-rest-pipeline';
import { QueueClient } from '@azure/storage-queue';
import { mapWithConcurrency } from '../domain/concurrency';
import type { HubStepMessage, StepQueue, StepReceipt } from '../domain/ports';
import { guard, toRotatorError } from './azureErrors';
import { HUB_STEPS_QUEUE } from './queueNames';
import { createdOnFirstUse } from './tables';

/** Storage queues take a message at most 7 days ahead. */
const MAX_DELAY_SECONDS = 7 * 86_400 - 60;
/** Sends in flight at once: a plan for a thousand hubs enqueues a thousand messages. */
const SEND_CONCURRENCY = 64;

export type QueueConnection =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'identity'; queueServiceUrl: string; credential: TokenCredential };

export class StorageStepQueue implements StepQueue {
  private readonly queue: QueueClient;
  /** Creates the queue on first use (deployments create it; the sandbox and a fresh Azurite do not). */
  private readonly ensureQueue: () => Promise<void>;

  constructor(connection: QueueConnection, name = HUB_STEPS_QUEUE) {
    this.queue =
      connection.kind === 'connectionString'
        ? new QueueClient(connection.connectionString, name)
        : new QueueClient(`${connection.queueServiceUrl.replace(/\/+$/, '')}/${name}`, connection.credential);
    this.ensureQueue = createdOnFirstUse('the hub step queue', () => this.queue.createIfNotExists());
  }

  async send(messages: HubStepMessage[], delayMs: number): Promise<StepReceipt[]> {
    if (!messages.length) return [];
    await this.ensureQueue();
    return guard('the hub step queue', () =>
      mapWithConcurrency(messages, SEND_CONCURRENCY, async (message) => {
        const { messageId, popReceipt } = await this.queue.sendMessage(encode(message), {
          visibilityTimeout: delaySeconds(delayMs),
        });
        return { messageId, popReceipt };
      }),
    );
  }

  async reschedule(receipt: StepReceipt, message: HubStepMessage, delayMs: number): Promise<boolean> {
    try {
      await this.queue.updateMessage(receipt.messageId, receipt.popReceipt, encode(message), delaySeconds(delayMs));
      return true;
    } catch (error) {
      // 404/400: the message became visible and another instance took it (the step outlasted its lease).
      if (isRestError(error) && (error.statusCode === 404 || error.statusCode === 400)) return false;
      throw toRotatorError(error, 'the hub step queue');
    }
  }

  async cancel(receipt: StepReceipt): Promise<void> {
    await this.queue.deleteMessage(receipt.messageId, receipt.popReceipt).catch(() => undefined);
  }
}

function delaySeconds(delayMs: number): number {
  return Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil(delayMs / 1000)));
}

export function encode(message: HubStepMessage): string {
  return Buffer.from(JSON.stringify(message), 'utf8').toString('base64');
}
