// The step pipeline under at-least-once delivery, several instances, instances that die mid-step, recording that
// crashed, and messages the host gave up on (poison queue).
import { describe, expect, it, vi } from 'vitest';
import type { Rotator } from '../../src/application';
import { UpstreamUnavailableError } from '../../src/domain/errors';
import type { HubDocument, HubStepMessage } from '../../src/domain/ports';
import { transientHubFault } from '../fakes';
import { KEY, fakeRotator, hubId, settle } from '../fakes/rotator';
import type { FakeRotator } from '../fakes/rotator';

const START = new Date('2026-06-01T00:00:00Z').getTime();
const LEASE = 60_000;
const since = (t: FakeRotator) => t.clock.now().getTime() - START;
const never = <T>() => new Promise<T>(() => undefined);

async function planned(names: string[]) {
  const t = fakeRotator({ stepLeaseMs: LEASE });
  const v1 = t.keyVault.addVersion(KEY);
  const v2 = t.keyVault.addVersion(KEY);
  const hubs = names.map((n) => t.hubs.add(hubId(n), v1.id));
  await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
  return { t, v1, v2, hubs, a: t.instance(), b: t.instance() };
}

/** A handler that starts the step and moves on once it ran as far as it can (a step that hangs stays hung). */
const fireAndForget = (t: FakeRotator, app: Rotator) => async (message: HubStepMessage) => {
  void app.advanceHub(message, t.invocation);
  await settle();
};

describe('duplicates and instances', () => {
  it('two instances working one queue, every message delivered twice: exactly one PUT per hub', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `hub-${i}`);
    const { t, v2, hubs, a, b } = await planned(names);
    await t.steps.drainConcurrently([t.worker(a), t.worker(b)], { duplicate: true });
    for (const hub of hubs) {
      expect(t.hubs.puts.filter((p) => p.hubId === hub)).toHaveLength(1);
      expect(t.hubs.keyOf(hub)).toBe(v2.id);
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'moved', recorded: true });
      expect(t.audit.records.filter((r) => r.hubId === hub)).toHaveLength(1);
      expect(new Set(t.outcomes.sent.filter((o) => o.subject === hub).map((o) => o.id)).size).toBe(1);
    }
    // The instances did race for steps (and the ledger let one of them take each).
    expect(t.log.lines.filter((l) => l.fields.reason === 'another instance took the step').length).toBeGreaterThan(0);
  });
});

describe('an instance that dies mid-step', () => {
  it('after claiming a step: its watchdog takes the hub over one lease later, never before', async () => {
    const { t, v2, hubs, a, b } = await planned(['hub']);
    const [first] = t.steps.takeDue();
    const getTimes: number[] = [];
    const realGet = t.hubs.get.bind(t.hubs);
    vi.spyOn(t.hubs, 'get').mockImplementation((id) => {
      getTimes.push(since(t));
      return getTimes.length === 1 ? never<HubDocument>() : realGet(id);
    });
    void a.advanceHub(first!, t.invocation);
    await settle();
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'pending', step: 1, leaseUntil: new Date(START + LEASE) });
    expect(t.steps.messages).toEqual([
      expect.objectContaining({ message: { ...first, step: 1 }, visibleAt: START + LEASE }),
    ]);

    // The watchdog delivered early (a redelivery) does nothing while the lease is live.
    t.clock.advance(LEASE - 1_000);
    await b.advanceHub({ ...first!, step: 1 }, t.invocation);
    expect(getTimes).toEqual([0]);

    await t.steps.drain(t.worker(b));
    expect(getTimes[1]).toBe(LEASE);
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', recorded: true });
  });

  it('after ARM accepted its PUT but before the ledger knew: the next owner waits for that update, no second PUT', async () => {
    const { t, v2, hubs, a, b } = await planned(['hub']);
    t.hubs.updateMs = 3 * LEASE;
    const realPut = t.hubs.beginReplace.bind(t.hubs);
    vi.spyOn(t.hubs, 'beginReplace').mockImplementationOnce(async (hub, body) => {
      await realPut(hub, body);
      return never();
    });
    await t.steps.drain(fireAndForget(t, a), { maxMessages: 1 });
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('pending');

    await t.steps.drain(t.worker(b));

    expect(t.hubs.puts).toHaveLength(1);
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', recorded: true });
  });

  it('while waiting on the operation: the next owner looks again one lease later and finishes', async () => {
    const { t, v2, hubs, a, b } = await planned(['hub']);
    await t.steps.drain(t.worker(b), { maxMessages: 1 }); // read and PUT; a look is due after 10 s
    vi.spyOn(t.hubs, 'operationState').mockImplementationOnce(() => never());
    await t.steps.drain(fireAndForget(t, a), { maxMessages: 1 });
    expect(since(t)).toBe(10_000);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'updating', leaseUntil: new Date(START + 10_000 + LEASE) });

    await t.steps.drain(t.worker(b));

    expect(t.hubs.looks.map((l) => l.at - START)).toEqual([10_000 + LEASE]);
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('moved');
  });

  it('a step that outlasts its lease loses to the step that took over: one accepted PUT, its result discarded', async () => {
    const { t, v2, hubs, a, b } = await planned(['hub']);
    let release!: () => void;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const realGet = t.hubs.get.bind(t.hubs);
    vi.spyOn(t.hubs, 'get').mockImplementationOnce(async (id) => {
      const doc = await realGet(id); // read now, answered only much later
      await slow;
      return doc;
    });
    const [first] = t.steps.takeDue();
    const stalled = a.advanceHub(first!, t.invocation);
    await settle();
    await t.steps.drain(t.worker(b), { maxMessages: 1 }); // the watchdog, one lease later: B reads and PUTs
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);

    release();
    await stalled;

    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.log.lines.some((l) => l.event === 'step.lost')).toBe(true);
    await t.steps.drain(t.worker(b));
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('moved');
    expect(t.audit.records).toHaveLength(1);
  });
});

describe('recording a final state', () => {
  it('a crash after the audit record but before the outcome: recorded exactly once later, same ids', async () => {
    const { t, v2, hubs, a, b } = await planned(['hub']);
    const publish = vi.spyOn(t.outcomes, 'publish').mockImplementationOnce(() => never());
    await t.steps.drain(fireAndForget(t, a), { until: () => t.jobs.taskOf(hubs[0]!)?.state === 'moved' });
    const finished = t.jobs.taskOf(hubs[0]!)!;
    expect(finished.recorded).toBe(false);
    expect(t.audit.records).toHaveLength(1);
    const firstTry = publish.mock.calls[0]![0];

    await t.steps.drain(t.worker(b));

    expect(t.audit.appends).toBe(2);
    expect(t.audit.records).toEqual([expect.objectContaining({ hubId: hubs[0], result: 'moved' })]);
    expect(t.outcomes.sent).toHaveLength(1);
    expect(t.outcomes.sent[0]!.id).toBeDefined();
    expect(t.outcomes.sent[0]!.id).toBe(firstTry[0]!.id);
    expect(t.audit.records[0]!.time).toEqual(finished.finishedAt);
    expect(t.jobs.taskOf(hubs[0]!)?.recorded).toBe(true);
    // Once recorded, any further message for the task is a no-op.
    for (const step of [0, finished.step]) {
      await b.advanceHub({ key: KEY, targetVersion: v2.version, hubId: hubs[0]!, step }, t.invocation);
    }
    expect(publish).toHaveBeenCalledTimes(2);
    expect(t.audit.appends).toBe(2);
  });

  it('an audit log that fails the record: the step throws (redelivered), the watchdog records it once', async () => {
    const { t, hubs, b } = await planned(['hub']);
    let failures = 0;
    t.audit.faults.push((records) =>
      records.some((r) => r.hubId) && failures++ === 0 ? new UpstreamUnavailableError('the audit table') : undefined,
    );
    const errors: unknown[] = [];
    await t.steps.drain((m) => b.advanceHub(m, t.invocation).catch((e: unknown) => void errors.push(e)));
    expect(errors).toEqual([expect.any(UpstreamUnavailableError)]);
    expect(t.audit.records).toEqual([expect.objectContaining({ hubId: hubs[0], result: 'moved' })]);
    expect(t.outcomes.sent.map((o) => o.type)).toEqual(['CmkRotator.HubKeyUpdated']);
    expect(t.jobs.taskOf(hubs[0]!)?.recorded).toBe(true);
  });
});

describe('a message the host gave up on (poison queue)', () => {
  it('fails the hub, records and publishes it; its later messages do nothing', async () => {
    const { t, v1, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    await t.rotator.failPoisonedStep(message!, t.invocation);
    const task = t.jobs.taskOf(hubs[0]!)!;
    expect(task).toMatchObject({ state: 'failed', errorCode: 'INTERNAL', recorded: true, step: 1 });
    expect(task.reason).toMatch(/poison queue/);
    expect(t.audit.records).toEqual([expect.objectContaining({ hubId: hubs[0], result: 'failed' })]);
    expect(t.outcomes.sent).toEqual([
      expect.objectContaining({ type: 'CmkRotator.HubKeyUpdateFailed', subject: hubs[0] }),
    ]);
    await t.rotator.advanceHub(message!, t.invocation);
    await t.drain();
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v1.id);
  });

  it('keeps the last failure’s code and reason', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    t.hubs.faults.push(transientHubFault(hubs[0]!));
    await t.drain({ maxMessages: 1 });
    const retrying = t.jobs.taskOf(hubs[0]!)!;
    const message = { key: KEY, targetVersion: v2.version, hubId: hubs[0]!, step: retrying.step };
    await t.rotator.failPoisonedStep(message, t.invocation);
    const task = t.jobs.taskOf(hubs[0]!)!;
    expect(task).toMatchObject({ state: 'failed', errorCode: 'UPSTREAM_UNAVAILABLE' });
    expect(task.reason).toMatch(/poison queue \(last: hub .* is unavailable/);
    await t.drain();
    expect(t.hubs.puts).toHaveLength(1);
  });

  it('does nothing for a task that moved on: a later step, or a final state', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    await t.rotator.advanceHub(message!, t.invocation); // the PUT: the task is at step 1 now
    await t.rotator.failPoisonedStep(message!, t.invocation);
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('updating');
    await t.drain();
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('moved');
    const step = t.jobs.taskOf(hubs[0]!)!.step;

    await t.rotator.failPoisonedStep({ ...message!, step }, t.invocation);

    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('moved');
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.audit.records.map((r) => r.result)).toEqual(['moved']);
    expect(t.outcomes.sent.map((o) => o.type)).toEqual(['CmkRotator.HubKeyUpdated']);
  });
});
