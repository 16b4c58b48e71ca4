// Queue triggers across `npm run serve` processes on one storage account, as instances of the app in Azure: they
// share a queue through message leases alone, stop gracefully on SIGTERM, and lose nothing to SIGKILL.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { QueueClient } from '@azure/storage-queue';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { HostBundle, RunningHost } from './cliFixture';
import { bundleHost, waitForOutput } from './cliFixture';
import type { FixtureApp } from './fixture';
import { TestQueues, createQueueApp, eventually, uniqueQueueName } from './queueFixture';

// Each invocation leaves files in PROBE_DIR: `started-<n>-<pid>-<dequeueCount>`, then `done-...` when it returns.
// `hold` waits for `release-<n>` on the first delivery; `waitForOtherInstance` waits until another process has
// started a message too.
const appSource = `
const fs = require('node:fs');
const path = require('node:path');
const dir = process.env.PROBE_DIR;
const until = async (check) => { while (!check()) await new Promise((resolve) => setTimeout(resolve, 20)); };
app.storageQueue('work', {
  queueName: '%WORK_QUEUE%',
  connection: 'AzureWebJobsStorage',
  handler: async (message, context) => {
    const tag = message.n + '-' + process.pid + '-' + context.triggerMetadata.dequeueCount;
    fs.writeFileSync(path.join(dir, 'started-' + tag), '');
    if (message.waitForOtherInstance) {
      await until(() => fs.readdirSync(dir).some((f) => f.startsWith('started-') && !f.includes('-' + process.pid + '-')));
    }
    if (message.hold && context.triggerMetadata.dequeueCount === 1) {
      await until(() => fs.existsSync(path.join(dir, 'release-' + message.n)));
    }
    fs.writeFileSync(path.join(dir, 'done-' + tag), '');
  },
});
`;

/** One at a time per instance, polling at most every 200 ms. */
const oneAtATime = { batchSize: 1, newBatchThreshold: 0, maxPollingInterval: '00:00:00.200' };

interface ProbeRecord {
  stage: string;
  n: number;
  pid: number;
  dequeueCount: number;
}

describe('queue triggers across host processes', () => {
  let bundle: HostBundle;
  let fixture: FixtureApp;
  let queues: TestQueues;
  let probeDir: string;
  let queue: QueueClient;
  let queueName: string;
  const running: RunningHost[] = [];

  beforeAll(async () => {
    bundle = await bundleHost();
    fixture = createQueueApp(appSource, oneAtATime);
    queues = new TestQueues(inject('storageConnectionString'));
  });
  afterAll(() => {
    fixture.remove();
    bundle.remove();
  });
  beforeEach(async () => {
    probeDir = mkdtempSync(path.join(os.tmpdir(), 'queue-probe-'));
    queueName = uniqueQueueName('steps');
    queue = await queues.create(queueName);
  });
  afterEach(async () => {
    for (const host of running.splice(0)) {
      if (!host.hasExited()) host.signal('SIGKILL');
      await host.exited;
    }
    rmSync(probeDir, { recursive: true, force: true });
  });

  const start = async (env: Record<string, string> = {}): Promise<RunningHost> => {
    const host = bundle.run(fixture.dir, {
      AzureWebJobsStorage: inject('storageConnectionString'),
      WORK_QUEUE: queueName,
      PROBE_DIR: probeDir,
      ...env,
    });
    running.push(host);
    await waitForOutput(host, /Host started on/);
    return host;
  };
  const records = (): ProbeRecord[] =>
    readdirSync(probeDir)
      .map((file) => /^(started|done)-(\d+)-(\d+)-(\d+)$/.exec(file))
      .filter((match) => match !== null)
      .map(([, stage, n, pid, dequeueCount]) => ({
        stage: stage!,
        n: Number(n),
        pid: Number(pid),
        dequeueCount: Number(dequeueCount),
      }));
  const done = (): ProbeRecord[] => records().filter((r) => r.stage === 'done');

  it('two instances share one queue, each message processed once', async () => {
    const total = 20;
    // Every message waits until the other instance has one too, so both must be taking messages for any to finish.
    for (let n = 0; n < total; n++) await queues.sendJson(queue, { n, waitForOtherInstance: true });
    await Promise.all([start(), start()]);

    await eventually(() => (done().length >= total ? true : undefined));
    await eventually(async () => ((await queues.count(queue)) === 0 ? true : undefined));
    const finished = done();
    expect(finished.map((r) => r.n).sort((a, b) => a - b)).toEqual([...Array(total).keys()]);
    expect(finished.every((r) => r.dequeueCount === 1)).toBe(true);
    expect(new Set(finished.map((r) => r.pid)).size).toBe(2);
  });

  it('on SIGTERM, takes no new message, finishes the one in flight, deletes it and exits 0', async () => {
    const host = await start();
    await waitForOutput(host, /work: queueTrigger \(%WORK_QUEUE%\)/); // the start-up listing
    await queues.sendJson(queue, { n: 1, hold: true });
    await eventually(() => (records().some((r) => r.stage === 'started' && r.n === 1) ? true : undefined));

    host.signal('SIGTERM');
    await waitForOutput(host, /SIGTERM: application is shutting down/);
    await queues.sendJson(queue, { n: 2 });
    expect(host.hasExited()).toBe(false); // still waiting for message 1
    writeFileSync(path.join(probeDir, 'release-1'), '');

    expect(await host.exited).toBe(0);
    expect(host.output().stdout).toContain('Host stopped.');
    expect(done().map((r) => r.n)).toEqual([1]);
    const left = await queues.peek(queue);
    expect(left.map((m) => [Buffer.from(m.messageText, 'base64').toString(), m.dequeueCount])).toEqual([
      ['{"n":2}', 0],
    ]);
    expect(await queues.count(queue)).toBe(1);
  });

  it("after SIGKILL, the killed instance's message comes back once its lease runs out and another finishes it", async () => {
    const shortLease = { LOCAL_HOST_QUEUE_LEASE_SECONDS: '2' };
    const killed = await start(shortLease);
    await queues.sendJson(queue, { n: 7, hold: true });
    await eventually(() => (records().some((r) => r.stage === 'started' && r.n === 7) ? true : undefined));
    killed.signal('SIGKILL');
    await killed.exited;

    const survivor = await start(shortLease);
    await eventually(() => (done().some((r) => r.n === 7) ? true : undefined));
    await eventually(async () => ((await queues.count(queue)) === 0 ? true : undefined));
    expect(done()).toEqual([{ stage: 'done', n: 7, pid: expect.any(Number) as number, dequeueCount: 2 }]);
    expect(done()[0]!.pid).not.toBe(records().find((r) => r.dequeueCount === 1)!.pid);
    survivor.signal('SIGTERM');
    expect(await survivor.exited).toBe(0);
  });
});
