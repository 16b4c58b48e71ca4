// Queue-trigger test apps and the storage they run against (Azurite, started by tools/emulators/src/vitestSetup.ts).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { QueueClient } from '@azure/storage-queue';
import { QueueServiceClient } from '@azure/storage-queue';
import type { FixtureApp } from './fixture';
import { createFixtureApp } from './fixture';

/** A queue name no other test uses (Azurite is shared by every test file). */
export const uniqueQueueName = (prefix: string): string => `${prefix}-${randomBytes(5).toString('hex')}`;

/** An app registering `source` (which may use `%WORK_QUEUE%`), with host.json `extensions.queues` = `queues`. */
export function createQueueApp(source: string, queues: Record<string, unknown>): FixtureApp {
  const fixture = createFixtureApp(`const { app } = require('@azure/functions');\n${source}`);
  writeFileSync(path.join(fixture.dir, 'host.json'), JSON.stringify({ version: '2.0', extensions: { queues } }));
  return fixture;
}

export class TestQueues {
  readonly service: QueueServiceClient;

  constructor(connectionString: string) {
    this.service = QueueServiceClient.fromConnectionString(connectionString);
  }

  async create(name: string): Promise<QueueClient> {
    const queue = this.service.getQueueClient(name);
    await queue.createIfNotExists();
    return queue;
  }

  /** Sends as the app will: JSON text, base64-encoded (host.json's default messageEncoding). */
  async sendJson(queue: QueueClient, value: unknown): Promise<string> {
    const text = Buffer.from(JSON.stringify(value)).toString('base64');
    return (await queue.sendMessage(text)).messageId;
  }

  /** Every message still in the queue, visible or not (the approximate count includes leased messages). */
  async count(queue: QueueClient): Promise<number> {
    if (!(await queue.exists())) return 0;
    return (await queue.getProperties()).approximateMessagesCount ?? 0;
  }

  /** The visible messages, without taking them. */
  async peek(queue: QueueClient): Promise<{ messageText: string; dequeueCount: number; messageId: string }[]> {
    if (!(await queue.exists())) return [];
    return (await queue.peekMessages({ numberOfMessages: 32 })).peekedMessageItems;
  }
}

/** Polls until `probe` returns something other than undefined (the test's timeout bounds the wait). */
export async function eventually<T>(probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
