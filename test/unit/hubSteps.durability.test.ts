// The step pipeline under at-least-once delivery, several instances, instances that die mid-step, recording that
// crashed, and messages the host gave up on (poison queue).
import { describe, expect, it, vi } from 'vitest';
import type { Rotator } from '../../src/application';
import { ThrottledError, UpstreamUnavailableError } from '../../src/domain/errors';
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
    const watchdog = { ...first!, hubs: [{ hubId: hubs[0]!, step: 1 }] };
    expect(t.steps.messages).toEqual([expect.objectContaining({ message: watchdog, visibleAt: START + LEASE })]);

    // The watchdog delivered early (a redelivery) does nothing while the lease is live.
    t.clock.advance(LEASE - 1_000);
    await b.advanceHub(watchdog, t.invocation);
    expect(getTimes).toEqual([0]);

    await t.steps.drain(t.worker(b));
    expect(getTimes[1]).toBe(LEASE);
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', recorded: true });
  });

  it('its watchdog is not due before the lease it watches ends, though the queue takes a moment to answer', async () => {
    const { t, v2, hubs, a, b } = await planned(['hub']);
    const realSend = t.steps.send.bind(t.steps);
    vi.spyOn(t.steps, 'send').mockImplementation(async (messages, delayMs) => {
      const receipts = await realSend(messages, delayMs);
      t.clock.advance(50); // the queue's answer takes 50 ms
      return receipts;
    });
    vi.spyOn(t.hubs, 'get').mockImplementationOnce(() => never());
    const [first] = t.steps.takeDue();
    void a.advanceHub(first!, t.invocation);
    await settle();
    const { leaseUntil } = t.jobs.taskOf(hubs[0]!)!;
    // Delivered as soon as it is visible, a watchdog due before the lease ends would find the step taken, and go.
    expect(t.steps.messages).toHaveLength(1);
    expect(t.steps.messages[0]!.visibleAt).toBeGreaterThanOrEqual(leaseUntil!.getTime());

    await t.steps.drain(t.worker(b));
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
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

describe('an instance that dies mid-group', () => {
  it('one lease later the watchdog takes over every hub of the group, the hung one included', async () => {
    const { t, v2, hubs, a, b } = await planned(['h0', 'h1', 'h2']);
    const [first] = t.steps.takeDue();
    const realGet = t.hubs.get.bind(t.hubs);
    const getTimes: number[] = [];
    vi.spyOn(t.hubs, 'get').mockImplementation((id) => {
      if (id !== hubs[1]) return realGet(id);
      getTimes.push(since(t));
      return getTimes.length === 1 ? never<HubDocument>() : realGet(id);
    });
    void a.advanceHub(first!, t.invocation);
    await settle();
    // The other two hubs' PUTs went in; the group's end (bringing the watchdog forward) is never reached.
    expect(t.hubs.acceptedPuts(hubs[0]!) + t.hubs.acceptedPuts(hubs[2]!)).toBe(2);
    expect(t.steps.messages).toEqual([
      expect.objectContaining({
        message: { ...first!, hubs: hubs.map((hubId) => ({ hubId, step: 1 })) },
        visibleAt: START + LEASE,
      }),
    ]);

    await t.steps.drain(t.worker(b));

    expect(getTimes.slice(0, 2)).toEqual([0, LEASE]); // its read again (then its verification)
    for (const hub of hubs) {
      expect(t.hubs.acceptedPuts(hub)).toBe(1);
      expect(t.hubs.keyOf(hub)).toBe(v2.id);
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'moved', recorded: true });
    }
  });

  it('a queue failure while sending the other groups leaves no hub without a message (the host retries the group)', async () => {
    const { t, v2, hubs, a, b } = await planned(['a1', 'a2', 'throttled']);
    let throttled = 0;
    t.hubs.faults.push((hub) =>
      hub.id === hubs[2] && throttled++ === 0 ? new ThrottledError('429', 45_000) : undefined,
    );
    const realSend = t.steps.send.bind(t.steps);
    let failed = false;
    vi.spyOn(t.steps, 'send').mockImplementation((messages, delayMs) => {
      if (failed || delayMs !== 45_000) return realSend(messages, delayMs);
      failed = true;
      return Promise.reject(new UpstreamUnavailableError('the hub step queue'));
    });
    const [first] = t.steps.takeDue();

    await expect(a.advanceHub(first!, t.invocation)).rejects.toBeInstanceOf(UpstreamUnavailableError);
    expect(failed).toBe(true);
    // The host makes the message visible again: every hub of it has moved on to step 1, so it does nothing.
    await b.advanceHub(first!, t.invocation);
    // Every hub still has a message that will take its next step (at the latest when the lease ends).
    expect(
      t.steps
        .queuedHubs()
        .map((h) => h.hubId)
        .sort(),
    ).toEqual([...hubs].sort());

    await t.steps.drain(t.worker(b));
    for (const hub of hubs) {
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'moved', recorded: true });
      expect(t.hubs.keyOf(hub)).toBe(v2.id);
    }
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
      await b.advanceHub({ key: KEY, targetVersion: v2.version, hubs: [{ hubId: hubs[0]!, step }] }, t.invocation);
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
    const message = { key: KEY, targetVersion: v2.version, hubs: [{ hubId: hubs[0]!, step: retrying.step }] };
    await t.rotator.failPoisonedStep(message, t.invocation);
    const task = t.jobs.taskOf(hubs[0]!)!;
    expect(task).toMatchObject({ state: 'failed', errorCode: 'UPSTREAM_UNAVAILABLE' });
    expect(task.reason).toMatch(/poison queue \(last: hub .* is unavailable/);
    await t.drain();
    expect(t.hubs.puts).toHaveLength(1);
  });

  it('fails each hub of a group still at the message’s step and not final; leaves the others', async () => {
    const { t, v2, hubs } = await planned(['stuck-1', 'stuck-2', 'moved-on', 'done']);
    const [stuck1, stuck2, movedOn, done] = hubs as [string, string, string, string];
    const [message] = t.steps.takeDue();
    const job = (await t.jobs.find(KEY, v2.version))!;
    await t.jobs.update(job, { ...t.jobs.taskOf(movedOn)!, step: 1, state: 'updating' });
    await t.jobs.update(job, { ...t.jobs.taskOf(done)!, state: 'moved', recorded: true, finishedAt: new Date(START) });
    const poisoned = { ...message!, hubs: [...message!.hubs, { hubId: hubId('unknown'), step: 0 }] };

    await t.rotator.failPoisonedStep(poisoned, t.invocation);

    for (const hub of [stuck1, stuck2]) {
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'failed', errorCode: 'INTERNAL', recorded: true, step: 1 });
      expect(t.jobs.taskOf(hub)?.reason).toMatch(/poison queue/);
    }
    expect(t.jobs.taskOf(movedOn)).toMatchObject({ state: 'updating', step: 1 });
    expect(t.jobs.taskOf(done)).toMatchObject({ state: 'moved', step: 0 });
    expect(t.audit.records.map((r) => [r.hubId, r.result]).sort()).toEqual([
      [stuck1, 'failed'],
      [stuck2, 'failed'],
    ]);
    expect(t.outcomes.sent.map((o) => [o.type, o.subject]).sort()).toEqual([
      ['CmkRotator.HubKeyUpdateFailed', stuck1],
      ['CmkRotator.HubKeyUpdateFailed', stuck2],
    ]);
    const ignored = () => t.log.lines.filter((l) => l.event === 'step.poison-ignored').map((l) => l.fields.hub);
    expect(ignored().sort()).toEqual([movedOn, done, hubId('unknown')].sort());

    // The same message again, or for a job the ledger does not know: nothing more.
    await t.rotator.failPoisonedStep(poisoned, t.invocation);
    await t.rotator.failPoisonedStep({ ...poisoned, targetVersion: 'f'.repeat(32) }, t.invocation);
    expect(t.audit.records).toHaveLength(2);
    expect(t.outcomes.sent).toHaveLength(2);
    expect(ignored()).toHaveLength(3 + 5 + 5);
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

    await t.rotator.failPoisonedStep({ ...message!, hubs: [{ hubId: hubs[0]!, step }] }, t.invocation);

    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('moved');
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.audit.records.map((r) => r.result)).toEqual(['moved']);
    expect(t.outcomes.sent.map((o) => o.type)).toEqual(['CmkRotator.HubKeyUpdated']);
  });
});
