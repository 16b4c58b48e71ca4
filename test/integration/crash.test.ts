// SIGKILL of an instance at each step of a hub's move: while it reads the hub, while its PUT is on the wire, while it
// looks at the running update. The queue's own lease on the dead instance's messages stays at Azure's 10 minutes,
// so the work can only come back through the app's watchdog messages (due when a step's lease ends, here 3 s): a
// second instance, or the restarted host, finishes every hub with exactly one accepted PUT, verified, recorded once.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHarness } from '../support/harness';
import type { AppInstance, Harness, HubRef, JobView } from '../support/harness';
import {
  acceptedPuts,
  expectAllOn,
  fleet,
  hubAudit,
  keyIdOf,
  outcomesFor,
  resultsOf,
  settleIfAny,
} from '../support/fleet';

const CLAIM_SECONDS = 3;

/** ARM requests received and not yet answered whose path contains `part`. */
const inFlight = (h: Harness, method: string, part: string) =>
  h.stack.arm.requests().filter((r) => r.method === method && r.status === undefined && r.url.includes(part));

/** Messages in the queue, visible or not. */
const queued = async (h: Harness) => (await h.queue('hub-steps').getProperties()).approximateMessagesCount ?? 0;

describe('an instance killed at each step of a hub move', () => {
  let h: Harness;
  let second: AppInstance | undefined;
  beforeAll(async () => {
    h = await startHarness({
      stack: { armPageSize: 100 },
      settings: {
        ROTATOR_HUB_CLAIM_SECONDS: String(CLAIM_SECONDS),
        LOCAL_HOST_QUEUE_LEASE_SECONDS: '600',
        ROTATOR_HUB_RETRY_SECONDS: '0',
        ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *',
      },
    });
  }, 60_000);
  beforeEach(async () => {
    // A test that failed half-way must not leave the next one without its host.
    const alive = await h.api('GET', '/api/health').then(
      () => true,
      () => false,
    );
    if (!alive) await h.restartHost('kill');
    h.stack.arm.faults.clear();
  });
  afterAll(async () => {
    await second?.host.stop();
    await h?.close();
  });

  /** A key whose hubs are `refs`, rotated by an operator; resolves with the new version and the plan. */
  async function rotate(name: string, refs: HubRef[]) {
    const key = await h.createKey(name);
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();
    return { key, start: () => h.api('POST', '/api/keys/rotate', { keyId: keyIdOf(name) }) };
  }

  /** Every hub moved once and verified, one audit record and one outcome each, no attempt lost to the crash. */
  async function expectMovedOnce(job: JobView, name: string, refs: HubRef[], target: string) {
    expect(resultsOf(job)).toEqual(Object.fromEntries(refs.map((r) => [r.name, 'moved'])));
    expect(job.hubs.every((x) => x.attempts === 0)).toBe(true);
    await expectAllOn(h, refs, target);
    for (const ref of refs) {
      expect(acceptedPuts(h, ref), ref.name).toBe(1);
      expect(
        (await hubAudit(h, name, ref, target)).map((r) => r.result),
        ref.name,
      ).toEqual(['moved']);
      expect(
        outcomesFor(h, ref).map((o) => o.type),
        ref.name,
      ).toEqual(['CmkRotator.HubKeyUpdated']);
    }
  }

  it('during the read: a second instance takes the hubs over one lease later and moves them', async () => {
    const refs = fleet('kill-read', 3);
    const { start } = await rotate('kill-read-cmk', refs);
    // Every ARM call now takes 1.5 s: the hub reads are in flight long enough to die in.
    h.stack.arm.faults.setLatency(1_500);
    const planned = await start();
    expect(planned.body).toMatchObject({ status: 'in-progress', hubs: refs.map(() => ({ result: 'queued' })) });
    const target = planned.body.createdVersion as string;
    await h.until(
      () => refs.every((r) => inFlight(h, 'GET', `/IotHubs/${r.name}?`).length > 0),
      'every hub read in flight',
    );
    await h.host.kill();
    h.stack.arm.faults.setLatency(0);
    expect(h.stack.arm.requests().filter((r) => r.method === 'PUT')).toEqual([]);

    second = await h.startInstance();
    const job = await h.settle(planned.body.jobId as string, { via: second });
    await h.restartHost('kill');

    await expectMovedOnce(job, 'kill-read-cmk', refs, target);
    const movedBySecond = second.host.logs.filter((l) => l.event === 'hub.moved').map((l) => String(l.fields.hub));
    expect(movedBySecond.map((id) => id.split('/').pop()).sort()).toEqual(refs.map((r) => r.name).sort());
    // What the dead instance held is still leased: the queue would give it back after 10 minutes only.
    expect(await queued(h)).toBeGreaterThan(0);
    expect((await h.queue('hub-steps').peekMessages()).peekedMessageItems).toEqual([]);
    await second.host.stop();
    second = undefined;
  }, 90_000);

  it('during the PUT: the restarted host finds the update it sent running and waits for it, no second PUT', async () => {
    const refs = fleet('kill-put', 3);
    const { start } = await rotate('kill-put-cmk', refs);
    // The updates run 8 s, longer than a restart plus a lease: the next owner meets them running.
    for (const ref of refs) h.stack.arm.timing.setHub(ref, { operationMs: 8_000, retryAfterSeconds: 1 });
    h.stack.arm.faults.setLatency(1_000);
    const planned = await start();
    const target = planned.body.createdVersion as string;
    await h.until(
      () => refs.every((r) => inFlight(h, 'PUT', `/IotHubs/${r.name}?`).length > 0),
      'every hub PUT in flight',
    );
    await h.host.kill();
    h.stack.arm.faults.setLatency(0);
    // ARM accepts the PUTs the dead host sent; it never learns.
    await h.until(() => refs.every((r) => acceptedPuts(h, r) === 1), 'ARM accepted every PUT');

    await h.restartHost('kill');
    const job = await h.settle(planned.body.jobId as string);

    await expectMovedOnce(job, 'kill-put-cmk', refs, target);
  }, 90_000);

  it('during a look at the running update: a second instance goes on looking and verifies', async () => {
    const refs = fleet('kill-wait', 3);
    const { start } = await rotate('kill-wait-cmk', refs);
    for (const ref of refs) h.stack.arm.timing.setHub(ref, { operationMs: 6_000, retryAfterSeconds: 1 });
    const planned = await start();
    const target = planned.body.createdVersion as string;
    await h.until(async () => (await h.job(planned.body.jobId as string))?.progress['in-flight'] === 3, 'updating');
    // Looks at the operations now take 1.5 s: kill once one per hub is on the wire.
    h.stack.arm.faults.setLatency(1_500);
    const operations = () =>
      new Set(inFlight(h, 'GET', '/operationResults/').map((r) => new URL(r.url, 'https://arm').pathname));
    await h.until(() => operations().size === refs.length, 'a look at every hub update in flight');
    await h.host.kill();
    h.stack.arm.faults.setLatency(0);

    second = await h.startInstance();
    const job = await h.settle(planned.body.jobId as string, { via: second });
    await h.restartHost('kill');

    await expectMovedOnce(job, 'kill-wait-cmk', refs, target);
    expect(second.host.logs.filter((l) => l.event === 'hub.moved')).toHaveLength(refs.length);
    await second.host.stop();
    second = undefined;
  }, 90_000);

  it('killed after ARM accepted the PUTs, whose first update then fails: re-written once, the other waited for', async () => {
    const refs = fleet('kill-orphan', 2);
    const { start } = await rotate('kill-orphan-cmk', refs);
    for (const ref of refs) h.stack.arm.timing.setHub(ref, { operationMs: 6_000, retryAfterSeconds: 1 });
    const planned = await start();
    const target = planned.body.createdVersion as string;
    await h.until(() => refs.every((r) => acceptedPuts(h, r) === 1), 'both hub PUTs accepted');
    await h.restartHost('kill');
    // ARM then fails the first of the two operations the dead host was waiting for and rolls that hub back; an
    // update started from now on is quick.
    h.stack.arm.faults.failNextOperations({ count: 1, code: 'InternalServerError' });
    for (const ref of refs) h.stack.arm.timing.setHub(ref, null);

    const job = await h.settle(planned.body.jobId as string);

    expect(resultsOf(job)).toEqual({ 'kill-orphan-1': 'moved', 'kill-orphan-2': 'moved' });
    await expectAllOn(h, refs, target);
    // Only the rolled-back hub needed a second write (one counted attempt); the other's update was waited for.
    const puts = refs.map((r) => acceptedPuts(h, r)).sort();
    expect(puts).toEqual([1, 2]);
    const rolledBack = refs.find((r) => acceptedPuts(h, r) === 2)!;
    expect(job.hubs.find((x) => x.hubName === rolledBack.name)?.attempts).toBe(1);
    for (const ref of refs) {
      expect((await hubAudit(h, 'kill-orphan-cmk', ref, target)).map((r) => r.result)).toEqual(['moved']);
    }
    const report = await h.api('POST', '/api/reconcile');
    expect((report.body.drift as { keyId: string }[]).filter((d) => d.keyId === keyIdOf('kill-orphan-cmk'))).toEqual(
      [],
    );
  }, 90_000);
});
