// Storage queue triggers on the local host, in process, against Azurite: what the function gets and what happens to
// the message afterwards, as the Functions host's queue extension does it.
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { LocalHost, LocalHostOptions } from '../src/server';
import { startLocalHost } from '../src/server';
import { parseLogLine, waitForLog } from './fixture';
import { TestQueues, createQueueApp, eventually, uniqueQueueName } from './queueFixture';

interface Invocation {
  message: unknown;
  triggerMetadata: Record<string, unknown>;
  invocationId: string;
}
type Probe = (message: unknown, context: { triggerMetadata: Record<string, unknown>; invocationId: string }) => unknown;
declare global {
  var __queueProbe: Probe | undefined;
}

const appSource = `
app.storageQueue('work', {
  queueName: '%WORK_QUEUE%',
  connection: 'AzureWebJobsStorage',
  handler: (message, context) => globalThis.__queueProbe(message, context),
});
`;
const fastPolling = { maxPollingInterval: '00:00:00.200' };
const until = (condition: () => boolean): Promise<true> => eventually(() => (condition() ? true : undefined));

let queues: TestQueues;
const cleanup: (() => unknown)[] = [];

beforeAll(() => {
  process.env.AzureWebJobsStorage = inject('storageConnectionString');
  queues = new TestQueues(inject('storageConnectionString'));
});
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
  globalThis.__queueProbe = undefined;
  delete process.env.LOCAL_HOST_QUEUE_LEASE_SECONDS;
});

/** Starts a host for the app above on a fresh queue (or `queueName`); `handle` runs as the function, calls recorded. */
async function startQueueHost(
  hostJsonQueues: Record<string, unknown>,
  handle: Probe = () => undefined,
  { queueName = uniqueQueueName('work'), ...options }: Partial<LocalHostOptions> & { queueName?: string } = {},
): Promise<{ host: LocalHost; queueName: string; invocations: Invocation[]; lines: string[] }> {
  process.env.WORK_QUEUE = queueName;
  const invocations: Invocation[] = [];
  globalThis.__queueProbe = (message, context) => {
    invocations.push({ message, triggerMetadata: context.triggerMetadata, invocationId: context.invocationId });
    return handle(message, context);
  };
  const fixture = createQueueApp(appSource, hostJsonQueues);
  cleanup.push(() => fixture.remove());
  const lines: string[] = [];
  const host = await startLocalHost({ appDir: fixture.dir, port: 0, log: (line) => lines.push(line), ...options });
  cleanup.push(() => host.close());
  return { host, queueName, invocations, lines };
}

describe('storage queue triggers', () => {
  it('runs the function with the decoded, JSON-parsed message and its trigger metadata, then deletes it', async () => {
    const { host, queueName, invocations, lines } = await startQueueHost(fastPolling);
    expect(host.queues).toEqual([{ functionName: 'work', queueName }]);
    const queue = await queues.create(queueName);
    const sentAt = Date.now();
    const messageId = await queues.sendJson(queue, { hub: 'hub-1', step: 'read' });

    await until(() => invocations.length === 1);
    const [invocation] = invocations;
    expect(invocation!.message).toEqual({ hub: 'hub-1', step: 'read' });
    const metadata = invocation!.triggerMetadata;
    // QueueTrigger is the message text; @azure/functions JSON-parses string metadata as it does the message.
    expect(metadata).toMatchObject({ dequeueCount: 1, id: messageId, queueTrigger: { hub: 'hub-1', step: 'read' } });
    expect(typeof metadata.popReceipt).toBe('string');
    for (const time of ['insertionTime', 'expirationTime', 'nextVisibleTime']) {
      expect(metadata[time]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/);
    }
    // Received with the host's 10-minute lease.
    expect(Date.parse(metadata.nextVisibleTime as string) - sentAt).toBeGreaterThan(9 * 60_000);

    await until(() =>
      lines.some((line) => line.includes(`Executed 'Functions.work' (Succeeded, Id=${invocation!.invocationId}`)),
    );
    await eventually(async () => ((await queues.count(queue)) === 0 ? true : undefined));
    const executing = lines.map(parseLogLine).find((l) => l.message.startsWith("Executing 'Functions.work'"));
    expect(executing).toMatchObject({
      source: 'work',
      invocationId: invocation!.invocationId,
      message: `Executing 'Functions.work' (Reason='New queue message detected on '${queueName}'.', Id=${invocation!.invocationId})`,
    });
    expect(lines.join('\n')).toContain(`Trigger Details: MessageId: ${messageId}, DequeueCount: 1`);
  });

  it('retries a failing message with a growing dequeue count, then moves it to <queue>-poison, created if missing', async () => {
    const { queueName, invocations, lines } = await startQueueHost(
      { ...fastPolling, maxDequeueCount: 3, visibilityTimeout: '00:00:00' },
      () => {
        throw new Error('this step always fails');
      },
    );
    const queue = await queues.create(queueName);
    const poison = queues.service.getQueueClient(`${queueName}-poison`);
    expect(await poison.exists()).toBe(false);
    await queues.sendJson(queue, { hub: 'hub-2' });

    const [moved] = await eventually(async () => {
      const found = await queues.peek(poison);
      return found.length > 0 ? found : undefined;
    });
    expect(Buffer.from(moved!.messageText, 'base64').toString()).toBe('{"hub":"hub-2"}');
    expect(invocations.map((i) => i.triggerMetadata.dequeueCount)).toEqual([1, 2, 3]);
    expect(await queues.count(queue)).toBe(0);
    await waitForLog(
      lines,
      (l) => l.message === `Message has reached MaxDequeueCount of 3. Moving message to queue '${queueName}-poison'.`,
    );
  });

  it('moves a message already dequeued more than maxDequeueCount times without running the function', async () => {
    const queueName = uniqueQueueName('work');
    const queue = await queues.create(queueName);
    await queues.sendJson(queue, { hub: 'abandoned' });
    for (let i = 0; i < 3; i++) {
      // What instances that died mid-invocation leave behind: a message dequeued, never completed.
      const [item] = (await queue.receiveMessages({ visibilityTimeout: 60 })).receivedMessageItems;
      await queue.updateMessage(item!.messageId, item!.popReceipt, undefined, 0);
    }
    const { invocations } = await startQueueHost({ ...fastPolling, maxDequeueCount: 2 }, undefined, { queueName });
    const poison = queues.service.getQueueClient(`${queueName}-poison`);
    await eventually(async () => ((await queues.peek(poison)).length === 1 ? true : undefined));
    expect(invocations).toEqual([]);
    expect(await queues.count(queue)).toBe(0);
  });

  it('with messageEncoding none, hands the message text over as it is (JSON parsed, other text as a string)', async () => {
    const { queueName, invocations } = await startQueueHost({ ...fastPolling, messageEncoding: 'none' });
    const queue = await queues.create(queueName);
    await queue.sendMessage('{"hub":"plain"}');
    await until(() => invocations.length === 1);
    await queue.sendMessage('not json at all');
    await until(() => invocations.length === 2);
    expect(invocations.map((i) => i.message)).toEqual([{ hub: 'plain' }, 'not json at all']);
    await eventually(async () => ((await queues.count(queue)) === 0 ? true : undefined));
  });

  it('with messageEncoding base64, moves a message that is not base64 to the poison queue without running', async () => {
    const { queueName, invocations, lines } = await startQueueHost(fastPolling);
    const queue = await queues.create(queueName);
    await queue.sendMessage('{"hub":"sent without encoding"}');
    const poison = queues.service.getQueueClient(`${queueName}-poison`);
    const [moved] = await eventually(async () => {
      const found = await queues.peek(poison);
      return found.length > 0 ? found : undefined;
    });
    expect(moved!.messageText).toBe('{"hub":"sent without encoding"}');
    expect(invocations).toEqual([]);
    expect(lines.join('\n')).toMatch(/is not base64/);
    // A base64 message right after it runs as usual.
    await queues.sendJson(queue, { hub: 'encoded' });
    await until(() => invocations.length === 1);
    expect(invocations[0]!.message).toEqual({ hub: 'encoded' });
  });

  it('takes batchSize messages at a time, and the next batch only once in-flight work drops to newBatchThreshold', async () => {
    let running = 0;
    let started = 0;
    let mostAtOnce = 0;
    const total = 6;
    // Each invocation waits until its batch-mate has started too, so a whole batch shows as concurrency.
    const handle = async () => {
      const startNumber = ++started;
      running++;
      mostAtOnce = Math.max(mostAtOnce, running);
      await until(() => started >= Math.min(total, Math.ceil(startNumber / 2) * 2));
      running--;
    };
    // All queued before the host starts, so that the first receive can fill a whole batch.
    const queueName = uniqueQueueName('work');
    const queue = await queues.create(queueName);
    for (let n = 0; n < total; n++) await queues.sendJson(queue, { n });
    const { invocations } = await startQueueHost({ ...fastPolling, batchSize: 2, newBatchThreshold: 0 }, handle, {
      queueName,
    });
    await until(() => invocations.length === total && running === 0);
    expect(mostAtOnce).toBe(2);
    expect(invocations.map((i) => (i.message as { n: number }).n).sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('fetches again while newBatchThreshold or fewer are in flight, up to batchSize + newBatchThreshold', async () => {
    let running = 0;
    let started = 0;
    let mostAtOnce = 0;
    const total = 6;
    // The first four must all start before any finishes: only a listener that fetches again while two are still
    // in flight gets there (one that waited for the batch to finish would never start the third).
    const handle = async () => {
      const startNumber = ++started;
      running++;
      mostAtOnce = Math.max(mostAtOnce, running);
      await until(() => started >= (startNumber <= 4 ? 4 : total));
      running--;
    };
    // All queued before the host starts, so that the first receive can fill a whole batch.
    const queueName = uniqueQueueName('work');
    const queue = await queues.create(queueName);
    for (let n = 0; n < total; n++) await queues.sendJson(queue, { n });
    const { invocations } = await startQueueHost({ ...fastPolling, batchSize: 2, newBatchThreshold: 2 }, handle, {
      queueName,
    });
    await until(() => invocations.length === total && running === 0);
    expect(mostAtOnce).toBe(4);
  });

  it('polls a queue that does not exist yet, and runs its messages once it does', async () => {
    const { queueName, invocations, lines } = await startQueueHost(fastPolling);
    await waitForLog(
      lines,
      (l) => l.level === 'warning' && l.message.includes(`Queue '${queueName}' does not exist yet`),
    );
    const queue = await queues.create(queueName);
    await queues.sendJson(queue, { hub: 'late' });
    await until(() => invocations.length === 1);
    expect(invocations[0]!.message).toEqual({ hub: 'late' });
  });

  it('keeps a message leased while its function runs longer than the lease', async () => {
    process.env.LOCAL_HOST_QUEUE_LEASE_SECONDS = '1';
    let release = false;
    const { queueName, invocations } = await startQueueHost(fastPolling, () => until(() => release));
    cleanup.push(() => (release = true));
    const queue = await queues.create(queueName);
    await queues.sendJson(queue, { hub: 'slow' });
    await until(() => invocations.length === 1);
    // Three leases long: without renewal the message would be visible again and run a second time.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await queues.peek(queue)).toEqual([]);
    expect(invocations).toHaveLength(1);
    release = true;
    await eventually(async () => ((await queues.count(queue)) === 0 ? true : undefined));
    expect(invocations).toHaveLength(1);
  });

  it('on close, takes no new message, waits for the invocations in flight and completes them', async () => {
    let release = false;
    const { host, queueName, invocations, lines } = await startQueueHost(
      { ...fastPolling, batchSize: 1, newBatchThreshold: 0 },
      () => until(() => release),
    );
    cleanup.push(() => (release = true));
    const queue = await queues.create(queueName);
    await queues.sendJson(queue, { n: 1 });
    await until(() => invocations.length === 1);

    const closed = host.close();
    await queues.sendJson(queue, { n: 2 }); // sent after the stop began: it must stay on the queue
    release = true;
    await closed;
    expect(invocations).toHaveLength(1);
    expect(
      (await queues.peek(queue)).map((m) => [Buffer.from(m.messageText, 'base64').toString(), m.dequeueCount]),
    ).toEqual([['{"n":2}', 0]]);
    expect(lines.join('\n')).toContain(`Executed 'Functions.work' (Succeeded, Id=${invocations[0]!.invocationId}`);
  });

  it('stops waiting after drainTimeoutMs; the message of an invocation still running reappears after its lease', async () => {
    process.env.LOCAL_HOST_QUEUE_LEASE_SECONDS = '1';
    let release = false;
    const { host, queueName, invocations, lines } = await startQueueHost(fastPolling, () => until(() => release), {
      drainTimeoutMs: 100,
    });
    cleanup.push(() => (release = true));
    const queue = await queues.create(queueName);
    await queues.sendJson(queue, { hub: 'stuck' });
    await until(() => invocations.length === 1);
    await host.close();
    expect(lines.join('\n')).toMatch(/1 invocation\(s\) of work still running after 100 ms/);
    const [again] = await eventually(async () => {
      const { receivedMessageItems } = await queue.receiveMessages({ visibilityTimeout: 60 });
      return receivedMessageItems.length > 0 ? receivedMessageItems : undefined;
    });
    expect(again!.dequeueCount).toBe(2);
  });
});

describe('queue trigger configuration', () => {
  it('refuses to start without the connection, naming the setting', async () => {
    const saved = process.env.AzureWebJobsStorage;
    delete process.env.AzureWebJobsStorage;
    cleanup.push(() => (process.env.AzureWebJobsStorage = saved));
    await expect(startQueueHost({})).rejects.toThrow(
      'Function "work": The storage connection "AzureWebJobsStorage" is not configured: set AzureWebJobsStorage',
    );
  });

  it('says which setting holds a bad connection string without echoing it', async () => {
    const saved = process.env.AzureWebJobsStorage;
    process.env.AzureWebJobsStorage = 'AccountName=devstoreaccount1;AccountKey=c2VjcmV0LXZhbHVl';
    cleanup.push(() => (process.env.AzureWebJobsStorage = saved));
    const failure = await startQueueHost({}).then(
      () => undefined,
      (error: Error) => error.message,
    );
    expect(failure).toBe(
      'Function "work": The app setting AzureWebJobsStorage is not a valid storage connection string.',
    );
  });

  it('refuses a queue name Azure would refuse, after resolving and lower-casing it', async () => {
    await expect(startQueueHost({}, undefined, { queueName: 'Hub--Steps' })).rejects.toThrow(
      'Function "work" queueName "hub--steps" is not a valid queue name',
    );
    const upper = await startQueueHost(fastPolling, undefined, { queueName: 'Hub-Steps-X' });
    expect(upper.host.queues).toEqual([{ functionName: 'work', queueName: 'hub-steps-x' }]);
  });

  it('refuses host.json queue settings the host would not take, saying what is expected', async () => {
    await expect(startQueueHost({ batchSize: 64 })).rejects.toThrow(
      'host.json extensions.queues.batchSize must be a whole number from 1 to 32, got 64.',
    );
    await expect(startQueueHost({ maxPollingInterval: 2000 })).rejects.toThrow(/reads the bare number 2000 as days/);
    await expect(startQueueHost({ messageEncoding: 'utf8' })).rejects.toThrow(/must be "base64" or "none"/);
  });
});
