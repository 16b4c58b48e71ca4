import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUB_A, SUB_B, startHarness } from '../support/harness';
import type { AppInstance, Harness, JobView } from '../support/harness';
import { acceptedPuts, hub, keyIdOf, resultsOf, settleIfAny } from '../support/fleet';

describe('experiment', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      stack: { armPageSize: 100 },
      settings: { ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *' },
    });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  async function run(name: string, sub: string, n: number, extra: AppInstance[], buckets: { reads: object; writes: object }) {
    const key = await h.createKey(name);
    const refs = Array.from({ length: n }, (_, i) => hub(sub, `${name}-${i + 1}`));
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();
    h.stack.arm.faults.setThrottling({ enabled: true, ...buckets });
    const t0 = Date.now();
    const planned = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf(name) });
    const jobId = planned.body.jobId as string;
    let maxThrottled = 0;
    let job: JobView | undefined;
    const snaps: unknown[] = [];
    for (;;) {
      job = await h.job(jobId);
      if (job) {
        maxThrottled = Math.max(maxThrottled, job.progress.throttled ?? 0);
        snaps.push(job.progress);
      }
      if (job?.done) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const counts = h.stack.arm.requestCounts();
    const reqs = h.stack.arm.requests();
    const kind = (u: string) => (u.includes('operationResults') ? 'op' : /IotHubs\/[^?]+\?/.test(u) ? 'hub' : 'list');
    const t00 = Date.parse(reqs[0]!.time);
    console.log(reqs.filter((r) => r.status === 429).map((r) => `${Date.parse(r.time) - t00} ${r.method} ${kind(r.url)} ${r.status}`).join('\n'));
    h.stack.arm.faults.setThrottling({ enabled: false });
    console.log(name, extra.length + 1, 'instances', Date.now() - t0, 'ms', JSON.stringify(counts), 'maxThrottled', maxThrottled);
    expect(Object.values(resultsOf(job)).every((r) => r === 'moved')).toBe(true);
    for (const ref of refs) expect(acceptedPuts(h, ref)).toBe(1);
    return counts;
  }

  it('one vs two', async () => {
    const b = { reads: { burst: 50, refillPerSecond: 25 }, writes: { burst: 20, refillPerSecond: 10 } };
    const one = await run('one', SUB_A, 60, [], b);
    const second = await h.startInstance();
    const two = await run('two', SUB_B, 60, [second], b);
    console.log(one.throttled, two.throttled);
    await second.host.stop();
  }, 300_000);
});
