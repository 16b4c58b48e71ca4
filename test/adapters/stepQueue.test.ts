// The hub step queue against Azurite with the real @azure/storage-queue client: delays, rescheduling, cancelling,
// and the message encoding the Functions host's queue trigger expects (base64 JSON).
import { randomUUID } from 'node:crypto';
import { QueueClient } from '@azure/storage-queue';
import { describe, expect, inject, it, vi } from 'vitest';
import { StorageStepQueue } from '../../src/adapters/stepQueue';
import { HUBS_PER_MESSAGE } from '../../src/domain/hubStep';
import type { HubStepMessage } from '../../src/domain/ports';
import { parseStepMessage } from '../../src/hosting/stepMessage';

const HOUR = 3_600_000;

function setup() {
  const connectionString = inject('storageConnectionString');
  const name = `steps-${randomUUID().slice(0, 8)}`;
  const raw = new QueueClient(connectionString, name);
  return {
    queue: new StorageStepQueue({ kind: 'connectionString', connectionString }, name),
    raw,
    /** Messages visible now (peeking changes nothing). */
    visible: async () => (await raw.peekMessages({ numberOfMessages: 32 })).peekedMessageItems,
    /** Every message in the queue, visible or not. */
    count: async () => (await raw.getProperties()).approximateMessagesCount,
  };
}

const decode = (text: string): unknown => JSON.parse(Buffer.from(text, 'base64').toString('utf8'));

const hubIdOf = (hub: string, group = 'rg') =>
  `/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/${group}/providers/Microsoft.Devices/IotHubs/${hub}`;

/** A message for hubs of one job, each at `step`. */
const message = (step: number, ...hubs: string[]): HubStepMessage => ({
  key: { vaultUrl: 'https://demo.vault.azure.net', name: 'hub-cmk' },
  targetVersion: 'c7254b6c8a5f4e0b9d1e2f3a4b5c6d7e',
  hubs: (hubs.length ? hubs : ['hub-1']).map((hub) => ({ hubId: hubIdOf(hub), step })),
});

describe('StorageStepQueue', () => {
  it('sends messages as base64 JSON that decodes (and validates) to the message, visible at once without a delay', async () => {
    const { queue, visible } = setup();
    const receipts = await queue.send([message(0, 'a'), message(0, 'b')], 0);
    expect(receipts).toEqual([
      { messageId: expect.any(String), popReceipt: expect.any(String) },
      { messageId: expect.any(String), popReceipt: expect.any(String) },
    ]);
    const texts = (await visible()).map((m) => m.messageText);
    expect(texts).toHaveLength(2);
    for (const text of texts) expect(text).toMatch(/^[A-Za-z0-9+/]+=*$/);
    const decoded = texts.map((text) => parseStepMessage(decode(text)));
    expect(decoded.map((m) => m.hubs[0]!.hubId.split('/').pop()).sort()).toEqual(['a', 'b']);
    expect(decoded[0]).toEqual(message(0, decoded[0]!.hubs[0]!.hubId.split('/').pop()!));
    expect(await queue.send([], 0)).toEqual([]);
  });

  it('carries a full group of hubs (HUBS_PER_MESSAGE, ARM ids of the longest names) within a queue message', async () => {
    const { queue, visible } = setup();
    // Resource group names go up to 90 characters and hub names up to 50.
    const group: HubStepMessage = {
      ...message(7),
      hubs: Array.from({ length: HUBS_PER_MESSAGE }, (_, i) => ({
        hubId: hubIdOf(`hub-${i}-`.padEnd(50, 'x'), 'g'.repeat(90)),
        step: 7 + i,
      })),
    };
    expect(await queue.send([group], 0)).toHaveLength(1);
    const [shown] = await visible();
    expect(parseStepMessage(decode(shown!.messageText))).toEqual(group);
  });

  it('keeps a delayed message invisible until its delay is over', async () => {
    const { queue, visible, count } = setup();
    await queue.send([message(1)], HOUR);
    await queue.send([message(2)], 1_000);
    expect(await visible()).toHaveLength(0);
    expect(await count()).toBe(2);
    await vi.waitFor(async () => expect(await visible()).toHaveLength(1), { timeout: 10_000, interval: 250 });
    const [shown] = await visible();
    expect(decode(shown!.messageText)).toEqual(message(2));
  });

  it('reschedule brings a waiting message forward, with the new content', async () => {
    const { queue, visible, count } = setup();
    const [receipt] = await queue.send([message(1, 'a', 'b', 'c')], HOUR);
    // A watchdog becomes the message of the hubs due together (here two of its three).
    expect(await queue.reschedule(receipt!, message(2, 'a', 'c'), 0)).toBe(true);
    const shown = await visible();
    expect(shown.map((m) => decode(m.messageText))).toEqual([message(2, 'a', 'c')]);
    expect(await count()).toBe(1);
  });

  it('cancel removes a message; it can no longer be rescheduled', async () => {
    const { queue, count } = setup();
    const [keep] = await queue.send([message(1, 'keep')], HOUR);
    const [gone] = await queue.send([message(1, 'gone')], HOUR);
    await queue.cancel(gone!);
    expect(await count()).toBe(1);
    expect(await queue.reschedule(gone!, message(2, 'gone'), 0)).toBe(false);
    expect(await queue.reschedule(keep!, message(2, 'keep'), HOUR)).toBe(true);
    await expect(queue.cancel(gone!)).resolves.toBeUndefined(); // best effort: twice is fine
  });

  it('reschedule answers false once another receiver took the message (its pop receipt changed)', async () => {
    const { queue, raw } = setup();
    const [receipt] = await queue.send([message(1)], 0);
    const taken = await raw.receiveMessages({ numberOfMessages: 1, visibilityTimeout: 60 });
    expect(taken.receivedMessageItems).toHaveLength(1);
    expect(await queue.reschedule(receipt!, message(2), 0)).toBe(false);
  });

  it('takes a delay beyond what the queue allows (7 days) by capping it', async () => {
    const { queue, count, visible } = setup();
    await queue.send([message(1)], 30 * 24 * HOUR);
    expect(await count()).toBe(1);
    expect(await visible()).toHaveLength(0);
  });
});
