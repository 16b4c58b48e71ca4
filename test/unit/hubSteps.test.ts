// One hub's move, a step per queue message: read and PUT, a look at the running update per message (delayed by
// ARM's Retry-After), verify. Failures: 412, permanent, transient (backoff, then failed), throttling (wait, no attempt).
import { describe, expect, it, vi } from 'vitest';
import type { RotationSettings } from '../../src/application';
import { HUBS_PER_MESSAGE } from '../../src/domain/hubStep';
import { ThrottledError, UpstreamUnavailableError } from '../../src/domain/errors';
import type { HubTask, JsonObject } from '../../src/domain/ports';
import { permanentHubFault, transientHubFault } from '../fakes';
import { KEY, fakeRotator, hubId } from '../fakes/rotator';
import type { FakeRotator } from '../fakes/rotator';

const START = new Date('2026-06-01T00:00:00Z').getTime();
const since = (t: FakeRotator) => t.clock.now().getTime() - START;

/** v1 and v2 of the key, the named hubs on v1, and a sync planned (one step message per 32 hubs). */
async function planned(names: string[], settings: Partial<RotationSettings> = {}) {
  const t = fakeRotator(settings);
  const v1 = t.keyVault.addVersion(KEY);
  const v2 = t.keyVault.addVersion(KEY);
  const hubs = names.map((n) => t.hubs.add(hubId(n), v1.id));
  const report = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
  return { t, v1, v2, hubs, jobId: report.jobId! };
}

/** A hub fault that records when each PUT came (ms since the start) and answers with `error` while it returns one. */
function putTimes(t: FakeRotator, hub: string, error: (n: number) => Error | undefined) {
  const times: number[] = [];
  t.hubs.faults.push((doc) => {
    if (doc.id !== hub) return undefined;
    times.push(since(t));
    return error(times.length);
  });
  return times;
}

describe('a hub’s steps', () => {
  it('read and PUT, one look per Retry-After until the update ends, then verify', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    t.hubs.retryAfterMs = 20_000;
    await t.drain({ maxMessages: 1 });
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({
      state: 'updating',
      waiting: 'operation',
      step: 1,
      notBefore: new Date(START + 20_000),
      operationUrl: expect.stringContaining('/operations/'),
    });
    expect(t.jobs.taskOf(hubs[0]!)?.leaseUntil).toBeUndefined();

    await t.drain();

    // The update takes 60 s and ARM says to look again after 20 s: three looks, each when ARM said.
    expect(t.hubs.looks.map((l) => l.at - START)).toEqual([20_000, 40_000, 60_000]);
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', durationMs: 60_000, recorded: true });
    expect(t.steps.messages).toHaveLength(0);
  });

  it('bounds ARM’s Retry-After by the configured waits', async () => {
    const { t } = await planned(['hub'], { maxWaitMs: 25_000 });
    t.hubs.retryAfterMs = 120_000;
    t.hubs.updateMs = 60_000;
    await t.drain();
    expect(t.hubs.looks.map((l) => l.at - START)).toEqual([25_000, 50_000, 75_000]);

    const fast = await planned(['hub'], { minWaitMs: 5_000 });
    fast.t.hubs.retryAfterMs = undefined;
    fast.t.hubs.updateMs = 12_000;
    await fast.t.drain();
    expect(fast.t.hubs.looks.map((l) => l.at - START)).toEqual([5_000, 10_000, 15_000]);
  });

  it('after a 412 reads the hub again and PUTs with the new ETag, within the same step', async () => {
    const { t, v2, hubs } = await planned(['raced']);
    let raced = false;
    t.hubs.faults.push((doc) => {
      if (!raced) {
        raced = true;
        t.hubs.touch(doc.id); // someone else wrote the hub between our GET and PUT
      }
      return undefined;
    });
    await t.drain();
    const puts = t.hubs.puts.filter((p) => p.hubId === hubs[0]);
    expect(puts).toHaveLength(2);
    expect(puts[1]!.ifMatch).not.toBe(puts[0]!.ifMatch);
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', attempts: 0 });
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
  });

  it('counts a hub that keeps changing under it (412 every time) as a transient failure', async () => {
    const { t, hubs } = await planned(['busy']);
    t.hubs.faults.push((doc) => void t.hubs.touch(doc.id));
    await t.drain({ maxMessages: 1 });
    expect(t.hubs.puts).toHaveLength(3); // maxEtagAttempts
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'pending', attempts: 1, errorCode: 'ETAG_CONFLICT' });
  });

  it('isolates a permanently failing hub: failed at once, recorded and published; the others move', async () => {
    const { t, v1, v2, hubs, jobId } = await planned(['bad', 'good']);
    const [bad, good] = hubs as [string, string];
    t.hubs.faults.push(permanentHubFault(bad));
    await t.drain();
    expect(t.hubs.keyOf(good)).toBe(v2.id);
    expect(t.hubs.keyOf(bad)).toBe(v1.id);
    expect(t.jobs.taskOf(bad)).toMatchObject({ state: 'failed', errorCode: 'HUB_UPDATE_FAILED', attempts: 1 });
    expect(t.hubs.puts.filter((p) => p.hubId === bad)).toHaveLength(1);
    expect(t.audit.records.find((r) => r.hubId === bad)).toMatchObject({
      result: 'failed',
      errorCode: 'HUB_UPDATE_FAILED',
    });
    const outcome = t.outcomes.sent.find((o) => o.subject === bad);
    expect(outcome).toMatchObject({ type: 'CmkRotator.HubKeyUpdateFailed', data: { errorCode: 'HUB_UPDATE_FAILED' } });
    const job = await t.rotator.job(jobId);
    expect(job).toMatchObject({ done: true, progress: { moved: 1, failed: 1 } });
  });

  it('retries a transient failure with backoff (30 s, then 4×), and fails the hub after maxHubAttempts', async () => {
    const { t, v1, hubs } = await planned(['flaky']);
    const times = putTimes(t, hubs[0]!, () => new UpstreamUnavailableError('ARM answered 503'));
    await t.drain();
    expect(times).toEqual([0, 30_000, 150_000]);
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v1.id);
    const task = t.jobs.taskOf(hubs[0]!)!;
    expect(task).toMatchObject({ state: 'failed', attempts: 3, errorCode: 'UPSTREAM_UNAVAILABLE' });
    expect(task.reason).toMatch(/gave up after 3 attempts/);
    expect(t.audit.records).toEqual([expect.objectContaining({ result: 'failed', errorCode: 'UPSTREAM_UNAVAILABLE' })]);
    expect(t.outcomes.sent.map((o) => o.type)).toEqual(['CmkRotator.HubKeyUpdateFailed']);
  });

  it('a hub that failed transiently once and then moved is recorded as moved, without the earlier error', async () => {
    const { t, v2, hubs } = await planned(['flaky']);
    t.hubs.faults.push(transientHubFault(hubs[0]!, 1));
    await t.drain();
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', attempts: 1 });
    const record = t.audit.records.find((r) => r.hubId === hubs[0]);
    expect(record?.result).toBe('moved');
    expect(record?.errorCode).toBeUndefined();
    expect(record?.message ?? '').not.toMatch(/will retry/);
    expect(t.outcomes.sent[0]?.data.errorCode).toBeUndefined();
  });

  it('does not take a hub that another operation is updating for current: it waits (backoff) without a PUT', async () => {
    const { t, v2, hubs } = await planned(['updating']);
    const stored = t.hubs.hubs.get(hubs[0]!)!;
    (stored.body.properties as JsonObject).provisioningState = 'Updating';
    await t.drain({ maxMessages: 1 });
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({
      state: 'pending',
      attempts: 1,
      waiting: 'backoff',
      errorCode: 'UPSTREAM_UNAVAILABLE',
    });
    (stored.body.properties as JsonObject).provisioningState = 'Succeeded';
    await t.drain();
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
  });

  it('a hub already showing the target while an update runs is waited for and verified, not taken for current', async () => {
    const { t, v2, hubs, jobId } = await planned(['ours']);
    // Our PUT whose acceptance the ledger never saw: the hub shows the target while ARM still applies it.
    const stored = t.hubs.hubs.get(hubs[0]!)!;
    stored.body = structuredClone(stored.body);
    (
      stored.body.properties as { encryption: { keyVaultProperties: { keyIdentifier: string }[] } }
    ).encryption.keyVaultProperties[0]!.keyIdentifier = v2.id;
    (stored.body.properties as JsonObject).provisioningState = 'Updating';
    await t.drain({ maxMessages: 3 });
    expect((await t.rotator.job(jobId)).hubs[0]?.result).toBe('in-flight');
    (stored.body.properties as JsonObject).provisioningState = 'Succeeded';
    await t.drain();
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('moved');
  });

  it('fails a hub whose update "succeeded" without applying the key (HUB_KEY_NOT_APPLIED)', async () => {
    const { t, hubs } = await planned(['sticky']);
    t.hubs.ignoreKeyChangeFor.add(hubs[0]!);
    await t.drain();
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'failed', errorCode: 'HUB_KEY_NOT_APPLIED' });
    expect(t.outcomes.sent[0]).toMatchObject({ type: 'CmkRotator.HubKeyUpdateFailed', subject: hubs[0] });
  });

  it('fails a hub whose update ARM reports as failed, with ARM’s error text (HUB_UPDATE_FAILED)', async () => {
    const { t, v1, hubs } = await planned(['rolled-back']);
    t.hubs.failNextOperations.push('KeyVaultAccessDenied: the identity cannot unwrap the key');
    await t.drain();
    const task = t.jobs.taskOf(hubs[0]!)!;
    expect(task).toMatchObject({ state: 'failed', errorCode: 'HUB_UPDATE_FAILED' });
    expect(task.reason).toContain('KeyVaultAccessDenied: the identity cannot unwrap the key');
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v1.id);
    expect(t.audit.records[0]?.message).toContain('KeyVaultAccessDenied');
  });
});

describe('throttling and waits', () => {
  it('waits as long as ARM asked after a 429 on the PUT, counting no attempt, however often it happens', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    const times = putTimes(t, hubs[0]!, (n) => (n <= 5 ? new ThrottledError('429', 45_000) : undefined));
    await t.drain({ maxMessages: 1 });
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({
      state: 'pending',
      waiting: 'throttled',
      attempts: 0,
      notBefore: new Date(START + 45_000),
    });
    expect(t.steps.messages.map((m) => m.visibleAt - START)).toEqual([45_000]);
    await t.drain();
    expect(times).toEqual([0, 45_000, 90_000, 135_000, 180_000, 225_000]);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', attempts: 0 });
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
  });

  it('bounds a throttled wait by minWaitMs and maxWaitMs', async () => {
    const { t, hubs } = await planned(['long', 'short']);
    const [long, short] = hubs as [string, string];
    const longTimes = putTimes(t, long, (n) => (n === 1 ? new ThrottledError('429', 3_600_000) : undefined));
    const shortTimes = putTimes(t, short, (n) => (n === 1 ? new ThrottledError('429', 5) : undefined));
    await t.drain();
    expect(longTimes).toEqual([0, 300_000]);
    expect(shortTimes).toEqual([0, 1_000]);
  });

  it('a message that arrives before the wait is over is put back until then, without touching ARM', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    putTimes(t, hubs[0]!, (n) => (n === 1 ? new ThrottledError('429', 45_000) : undefined));
    await t.drain({ maxMessages: 1 });
    const task = t.jobs.taskOf(hubs[0]!)!;
    t.clock.advance(10_000);
    const gets = t.hubs.gets.length;

    await t.rotator.advanceHub(
      { key: KEY, targetVersion: v2.version, hubs: [{ hubId: hubs[0]!, step: task.step }] },
      t.invocation,
    );

    expect(t.hubs.gets).toHaveLength(gets);
    expect(t.jobs.taskOf(hubs[0]!)?.etag).toBe(task.etag);
    expect(t.steps.messages.map((m) => m.visibleAt - START)).toEqual([45_000, 45_000]);
  });

  it('throttled reads wait too: a 429 on the GET or on a look at the operation costs no attempt', async () => {
    const { t, v2, hubs, jobId } = await planned(['hub']);
    let reads = 0;
    // Every other read is throttled, four times: the first GET and three looks at the operation.
    t.hubs.readFaults.push(() => (++reads % 2 === 1 && reads < 8 ? new ThrottledError('429', 20_000) : undefined));
    await t.drain({ maxMessages: 1 });
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'pending', waiting: 'throttled', attempts: 0 });
    expect(t.hubs.puts).toHaveLength(0);
    await t.drain({ maxMessages: 2 });
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'updating', waiting: 'throttled', attempts: 0 });
    expect((await t.rotator.job(jobId)).progress).toMatchObject({ throttled: 1, 'in-flight': 0 });
    await t.drain();
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', attempts: 0 });
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
  });
});

describe('step messages that must do nothing', () => {
  it('a message for an old step, or for a job the ledger does not know, changes nothing and calls nothing', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    await t.drain({ maxMessages: 1 });
    const task = t.jobs.taskOf(hubs[0]!)!;
    const calls = t.hubs.gets.length + t.hubs.puts.length + t.hubs.looks.length;
    const writes = t.jobs.writes.length;

    await t.rotator.advanceHub(
      { key: KEY, targetVersion: v2.version, hubs: [{ hubId: hubs[0]!, step: 0 }] },
      t.invocation,
    );
    await t.rotator.advanceHub(
      { key: KEY, targetVersion: 'f'.repeat(32), hubs: [{ hubId: hubs[0]!, step: 0 }] },
      t.invocation,
    );

    expect(t.hubs.gets.length + t.hubs.puts.length + t.hubs.looks.length).toBe(calls);
    expect(t.jobs.writes).toHaveLength(writes);
    expect(t.jobs.taskOf(hubs[0]!)?.etag).toBe(task.etag);
    expect(t.log.lines.map((l) => l.event)).toEqual(expect.arrayContaining(['step.skipped', 'step.orphaned']));
  });
});

/** Sets fields of a hub's task in the ledger, as an earlier step (or another instance) would have. */
async function setTask(t: FakeRotator, targetVersion: string, hub: string, changes: Partial<HubTask>) {
  const job = (await t.jobs.find(KEY, targetVersion))!;
  const saved = await t.jobs.update(job, { ...t.jobs.taskOf(hub)!, ...changes });
  expect(saved).toBeDefined();
  return saved!;
}

/** The queued messages as [ms from `from` until visible, hub ids (sorted), steps], soonest first. */
const queued = (t: FakeRotator, from = START) =>
  t.steps.messages
    .map((m) => [m.visibleAt - from, m.message.hubs.map((h) => h.hubId).sort(), m.message.hubs.map((h) => h.step)])
    .sort((x, y) => (x[0] as number) - (y[0] as number));

describe('grouped step messages', () => {
  it('reads a group’s tasks at once; runs the due hubs, puts early ones back by delay, leaves old steps and records a final one once', async () => {
    const { t, v2, hubs } = await planned(['due-1', 'due-2', 'early-1', 'early-2', 'earlier', 'old', 'final']);
    const [due1, due2, early1, early2, earlier, old, final] = hubs as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const [planned7] = t.steps.takeDue();
    expect(planned7!.hubs).toEqual(hubs.map((hubId) => ({ hubId, step: 0 })));
    await setTask(t, v2.version, early1, { waiting: 'throttled', notBefore: new Date(START + 45_000) });
    await setTask(t, v2.version, early2, { waiting: 'throttled', notBefore: new Date(START + 44_200) }); // same second
    await setTask(t, v2.version, earlier, { waiting: 'backoff', notBefore: new Date(START + 10_500) });
    const oldTask = await setTask(t, v2.version, old, { step: 2 });
    const finishedAt = new Date(START - 5_000);
    await setTask(t, v2.version, final, { state: 'moved', step: 3, finishedAt, recorded: false, durationMs: 42 });
    const message = { ...planned7!, hubs: [...planned7!.hubs, { hubId: hubId('unknown'), step: 0 }] };
    const reads = vi.spyOn(t.jobs, 'tasksOf');

    await t.rotator.advanceHub(message, t.invocation);

    expect(reads).toHaveBeenCalledTimes(1);
    expect(reads.mock.calls[0]![1]).toEqual(message.hubs.map((h) => h.hubId));
    // The due hubs ran (read and PUT); their look is due after ARM's Retry-After, in one message.
    expect(t.hubs.puts.map((p) => p.hubId).sort()).toEqual([due1, due2].sort());
    for (const hub of [due1, due2]) expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'updating', step: 1 });
    // The early ones went back unchanged, grouped by the whole second their wait ends in.
    expect(queued(t)).toEqual([
      [10_000, [due1, due2].sort(), [1, 1]],
      [11_000, [earlier], [0]],
      [45_000, [early1, early2].sort(), [0, 0]],
    ]);
    for (const hub of [early1, early2, earlier])
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'pending', step: 0 });
    // The old step changed nothing; the unknown hub is reported.
    expect(t.jobs.taskOf(old)?.etag).toBe(oldTask.etag);
    expect(t.log.lines).toContainEqual(
      expect.objectContaining({ event: 'step.skipped', fields: expect.objectContaining({ hub: old, step: 0 }) }),
    );
    expect(t.log.lines).toContainEqual(
      expect.objectContaining({ event: 'step.orphaned', fields: expect.objectContaining({ hub: hubId('unknown') }) }),
    );
    // The final hub was recorded (audit and outcome at its finishing time), once.
    expect(t.audit.records).toEqual([
      expect.objectContaining({ hubId: final, result: 'moved', time: finishedAt, durationMs: 42 }),
    ]);
    expect(t.outcomes.sent).toEqual([expect.objectContaining({ type: 'CmkRotator.HubKeyUpdated', subject: final })]);
    expect(t.jobs.taskOf(final)).toMatchObject({ recorded: true, step: 3 });

    // The same message again (at-least-once delivery): no second record, no second PUT.
    const appends = t.audit.appends;
    await t.rotator.advanceHub(message, t.invocation);
    expect(t.audit.appends).toBe(appends);
    expect(t.outcomes.sent).toHaveLength(1);
    expect(t.hubs.puts).toHaveLength(2);

    await t.drain();
    for (const hub of [due1, due2, early1, early2, earlier]) {
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'moved', recorded: true });
      expect(t.hubs.acceptedPuts(hub)).toBe(1);
    }
    expect(t.audit.records.filter((r) => r.hubId === final)).toHaveLength(1);
  });

  it('sends hubs whose next steps fall due at different times in separate messages; the largest group reuses the watchdog', async () => {
    const { t, v2, hubs } = await planned(['a', 'b', 'c', 'throttled-1', 'throttled-2', 'flaky', 'bad']);
    const [a, b, c, throttled1, throttled2, flaky, bad] = hubs as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const throttledOnce = new Set([throttled1, throttled2]);
    t.hubs.faults.push(
      (hub) => (throttledOnce.delete(hub.id) ? new ThrottledError('429', 45_000) : undefined),
      transientHubFault(flaky, 1),
      permanentHubFault(bad),
    );
    const [message] = t.steps.takeDue();
    const send = vi.spyOn(t.steps, 'send');
    const reschedule = vi.spyOn(t.steps, 'reschedule');
    const cancel = vi.spyOn(t.steps, 'cancel');

    await t.rotator.advanceHub(message!, t.invocation);

    // First (before any step): one watchdog for every due hub, each at its next step, due when the lease ends.
    expect(send.mock.calls[0]).toEqual([
      [{ key: KEY, targetVersion: v2.version, hubs: hubs.map((hubId) => ({ hubId, step: 1 })) }],
      60_000,
    ]);
    const [watchdog] = await send.mock.results[0]!.value;
    // Then the watchdog became the largest group's message; the two others were sent.
    expect(reschedule).toHaveBeenCalledTimes(1);
    expect(reschedule.mock.calls[0]![0]).toEqual(watchdog);
    expect(reschedule.mock.calls[0]![1].hubs.map((h) => h.hubId).sort()).toEqual([a, b, c].sort());
    expect(reschedule.mock.calls[0]![2]).toBe(10_000);
    expect(send).toHaveBeenCalledTimes(3);
    expect(cancel).not.toHaveBeenCalled();
    expect(queued(t)).toEqual([
      [10_000, [a, b, c].sort(), [1, 1, 1]],
      [30_000, [flaky], [1]],
      [45_000, [throttled1, throttled2].sort(), [1, 1]],
    ]);
    expect(t.steps.messages.find((m) => m.visibleAt === START + 10_000)?.id).toBe(watchdog!.messageId);
    expect(t.jobs.taskOf(bad)).toMatchObject({ state: 'failed', recorded: true });

    await t.drain();
    for (const hub of [a, b, c, throttled1, throttled2, flaky]) {
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'moved', recorded: true });
      expect(t.hubs.keyOf(hub)).toBe(v2.id);
    }
  });

  it('cancels the watchdog when every hub of the message finished, and sends nothing', async () => {
    const { t, v2, hubs } = await planned(['current', 'bad']);
    const [current, bad] = hubs as [string, string];
    // The hub shows the target already (someone moved it): already-current in one step.
    const stored = t.hubs.hubs.get(current)!;
    (
      stored.body.properties as { encryption: { keyVaultProperties: { keyIdentifier: string }[] } }
    ).encryption.keyVaultProperties[0]!.keyIdentifier = v2.id;
    t.hubs.faults.push(permanentHubFault(bad));
    const [message] = t.steps.takeDue();
    const send = vi.spyOn(t.steps, 'send');
    const reschedule = vi.spyOn(t.steps, 'reschedule');
    const cancel = vi.spyOn(t.steps, 'cancel');

    await t.rotator.advanceHub(message!, t.invocation);

    expect(send).toHaveBeenCalledTimes(1); // the watchdog
    const [watchdog] = await send.mock.results[0]!.value;
    expect(cancel).toHaveBeenCalledExactlyOnceWith(watchdog);
    expect(reschedule).not.toHaveBeenCalled();
    expect(t.steps.messages).toEqual([]);
    expect(t.jobs.taskOf(current)).toMatchObject({ state: 'already-current', recorded: true });
    expect(t.jobs.taskOf(bad)).toMatchObject({ state: 'failed', recorded: true });
    expect(t.audit.records.map((r) => r.result).sort()).toEqual(['already-current', 'failed']);
  });

  it('splits a group of more than 32 hubs: the plan, the next steps (the watchdog takes 32), and hubs put back', async () => {
    const names = Array.from({ length: 70 }, (_, i) => `hub-${i}`);
    const { t, v2, hubs } = await planned(names);
    expect(t.steps.messages.map((m) => m.message.hubs.length)).toEqual([HUBS_PER_MESSAGE, HUBS_PER_MESSAGE, 6]);
    expect(t.steps.queuedHubs().map((h) => h.hubId)).toEqual(hubs);
    expect(t.steps.queuedHubs().every((h) => h.step === 0 && h.visibleAt === START)).toBe(true);

    // A message of 40 hubs (the parser takes up to 100): their next steps go out as 32 + 8.
    const planned3 = t.steps.takeDue();
    const big = { key: KEY, targetVersion: v2.version, hubs: planned3.flatMap((m) => m.hubs).slice(0, 40) };
    const reschedule = vi.spyOn(t.steps, 'reschedule');
    await t.rotator.advanceHub(big, t.invocation);
    expect(queued(t).map(([inMs, ids]) => [inMs, (ids as string[]).length])).toEqual([
      [10_000, 32],
      [10_000, 8],
    ]);
    expect(reschedule).toHaveBeenCalledTimes(1);
    expect(reschedule.mock.calls[0]![1].hubs).toHaveLength(32);
    expect(t.steps.queuedHubs().map((h) => [h.hubId, h.step])).toEqual(hubs.slice(0, 40).map((h) => [h, 1]));

    // The same 40 hubs arriving before their look is due go back as 32 + 8 too.
    t.steps.messages = [];
    t.clock.advance(1_000);
    await t.rotator.advanceHub({ ...big, hubs: big.hubs.map((h) => ({ ...h, step: 1 })) }, t.invocation);
    expect(queued(t, START + 1_000).map(([inMs, ids]) => [inMs, (ids as string[]).length])).toEqual([
      [9_000, 32],
      [9_000, 8],
    ]);
    expect(t.hubs.looks).toHaveLength(0);
  });
});
