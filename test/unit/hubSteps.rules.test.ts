// The hub step pipeline's rules that operators depend on: what is logged (and with which fields), what a failed
// ARM operation means, when a hub's key versions are read again, races lost to another instance, and the exact
// audit records and outcome events of a hub's final state.
import { describe, expect, it, vi } from 'vitest';
import type { RotationSettings } from '../../src/application';
import { UpstreamUnavailableError } from '../../src/domain/errors';
import { jobIdOf } from '../../src/domain/jobId';
import type { HubTask, JsonObject, RotationJob } from '../../src/domain/ports';
import { KEY, VAULT, fakeRotator, hubId, keyVaultEvent } from '../fakes/rotator';
import type { FakeRotator } from '../fakes/rotator';

const START = new Date('2026-06-01T00:00:00Z').getTime();
const LABEL = 'contoso.vault.azure.net/hub-cmk';

async function planned(names: string[], settings: Partial<RotationSettings> = {}, before?: (t: FakeRotator) => void) {
  const t = fakeRotator(settings);
  const v1 = t.keyVault.addVersion(KEY);
  const v2 = t.keyVault.addVersion(KEY);
  const hubs = names.map((n) => t.hubs.add(hubId(n), v1.id));
  before?.(t);
  await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
  const job = (await t.jobs.find(KEY, v2.version))!;
  return { t, v1, v2, hubs, job };
}

type Entries = { encryption: { keyVaultProperties: { keyIdentifier: string }[] } };
const entriesOf = (t: FakeRotator, hub: string) =>
  (t.hubs.hubs.get(hub)!.body.properties as Entries).encryption.keyVaultProperties;
const setState = (t: FakeRotator, hub: string, state: string) =>
  void ((t.hubs.hubs.get(hub)!.body.properties as JsonObject).provisioningState = state);
/** A second encryption entry for the key on the hub (ARM lets a hub list several). */
const addEntry = (t: FakeRotator, hub: string, keyIdentifier: string) =>
  entriesOf(t, hub).push({ ...structuredClone(entriesOf(t, hub)[0]!), keyIdentifier });

const lines = (t: FakeRotator, event: string) => t.log.lines.filter((l) => l.event === event);

describe('what a step logs', () => {
  it('a message for a job the ledger does not know, or a hub the job does not list: step.orphaned with key and version', async () => {
    const { t, v2 } = await planned(['hub']);
    const unknown = 'f'.repeat(32);
    await t.rotator.advanceHub(
      { key: KEY, targetVersion: unknown, hubs: [{ hubId: hubId('hub'), step: 0 }] },
      t.invocation,
    );
    await t.rotator.advanceHub(
      { key: KEY, targetVersion: v2.version, hubs: [{ hubId: hubId('stranger'), step: 0 }] },
      t.invocation,
    );
    expect(lines(t, 'step.orphaned')).toEqual([
      {
        level: 'warn',
        event: 'step.orphaned',
        fields: { key: LABEL, version: unknown, reason: 'no such job in the ledger' },
      },
      {
        level: 'warn',
        event: 'step.orphaned',
        fields: { key: LABEL, version: v2.version, hub: hubId('stranger'), reason: 'no such task in the ledger' },
      },
    ]);
  });

  it('a message with no step due queues nothing (no watchdog either)', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    await t.drain({ maxMessages: 1 });
    const sent = t.steps.sent;
    const queued = t.steps.messages.length;
    await t.rotator.advanceHub(
      { key: KEY, targetVersion: v2.version, hubs: [{ hubId: hubs[0]!, step: 0 }] },
      t.invocation,
    );
    expect(t.steps.sent).toBe(sent);
    expect(t.steps.messages).toHaveLength(queued);
  });

  it('a step taken: step.taken with the hub, its step, state, what it waits for and when it is next due', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    await t.drain({ maxMessages: 1 });
    expect(lines(t, 'step.taken')).toEqual([
      {
        level: 'info',
        event: 'step.taken',
        fields: {
          key: LABEL,
          version: v2.version,
          hub: hubs[0],
          step: 1,
          state: 'updating',
          waiting: 'operation',
          nextInMs: 10_000,
        },
      },
    ]);
  });
});

describe('races with another instance', () => {
  it('a step whose claim another instance won is skipped: no read, no PUT, no message left behind', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    vi.spyOn(t.jobs, 'update').mockResolvedValueOnce(undefined);
    await t.rotator.advanceHub(message!, t.invocation);
    expect(t.hubs.gets).toHaveLength(0);
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.steps.messages).toHaveLength(0);
    expect(lines(t, 'step.skipped')).toEqual([
      {
        level: 'info',
        event: 'step.skipped',
        fields: { key: LABEL, version: v2.version, hub: hubs[0], reason: 'another instance took the step' },
      },
    ]);
  });

  it('a step whose result another step overwrote is discarded: step.lost, nothing recorded', async () => {
    const { t, v2, hubs, job } = await planned(['current']);
    entriesOf(t, hubs[0]!)[0]!.keyIdentifier = v2.id; // already current: the step's result would be final
    const [message] = t.steps.takeDue();
    const update = t.jobs.update.bind(t.jobs);
    vi.spyOn(t.jobs, 'update')
      .mockImplementationOnce(update)
      .mockImplementationOnce(async (j: RotationJob, task: HubTask) => {
        await update(j, { ...t.jobs.taskOf(task.hubId)!, step: 5 }); // the watchdog's owner took over meanwhile
        return update(j, task);
      });
    await t.rotator.advanceHub(message!, t.invocation);
    expect(lines(t, 'step.lost')).toEqual([
      {
        level: 'warn',
        event: 'step.lost',
        fields: {
          key: LABEL,
          version: v2.version,
          hub: hubs[0],
          step: 1,
          reason: 'the lease ran out and another step took over',
        },
      },
    ]);
    expect(t.audit.records).toEqual([]);
    expect(t.outcomes.sent).toEqual([]);
    expect((await t.jobs.tasks(job))[0]).toMatchObject({ state: 'pending', step: 5 });
  });

  it('when the queue gives no receipt for the watchdog, the next step is still sent', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    const other = { ...message!, hubs: [{ hubId: hubId('elsewhere'), step: 7 }] };
    await t.steps.send([other], 3_600_000); // another job's message waits in the queue
    vi.spyOn(t.steps, 'send').mockResolvedValueOnce([]);
    await t.rotator.advanceHub(message!, t.invocation);
    expect(t.steps.queuedHubs().filter((h) => h.hubId === hubs[0])).toEqual([
      { id: expect.any(String), hubId: hubs[0], step: 1, visibleAt: START + 10_000 },
    ]);
    await t.drain();
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
  });

  it('when the queue gives no receipt for the watchdog and the hub finished, nothing is sent', async () => {
    const { t, v2, hubs } = await planned(['current']);
    entriesOf(t, hubs[0]!)[0]!.keyIdentifier = v2.id;
    const [message] = t.steps.takeDue();
    const send = vi.spyOn(t.steps, 'send').mockResolvedValueOnce([]);
    await t.rotator.advanceHub(message!, t.invocation);
    expect(send).toHaveBeenCalledTimes(1);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'already-current', recorded: true });
  });

  it('when the watchdog is gone already (taken early), the next step is sent anew', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    vi.spyOn(t.steps, 'reschedule').mockResolvedValueOnce(false);
    await t.rotator.advanceHub(message!, t.invocation);
    expect(t.steps.queuedHubs().map((h) => [h.hubId, h.step, h.visibleAt - START])).toEqual([
      [hubs[0], 1, 60_000], // the watchdog, as the fake still holds it
      [hubs[0], 1, 10_000],
    ]);
    await t.drain();
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
  });
});

describe('the job row is read once per instance', () => {
  it('keeps up to 200 jobs, dropping the oldest first', async () => {
    const t = fakeRotator();
    const versions = Array.from({ length: 201 }, (_, i) => i.toString(16).padStart(32, '0'));
    for (const version of versions) {
      await t.jobs.open(
        {
          key: KEY,
          targetVersion: version,
          targetId: `${VAULT}/keys/hub-cmk/${version}`,
          trigger: 'manual-sync',
          correlationId: 'c',
          openedAt: new Date(START),
        },
        [],
      );
    }
    const find = vi.spyOn(t.jobs, 'find');
    const advance = (i: number) =>
      t.rotator.advanceHub({ key: KEY, targetVersion: versions[i]!, hubs: [] }, t.invocation);
    for (let i = 0; i < 200; i++) await advance(i);
    expect(find).toHaveBeenCalledTimes(200);
    await advance(0);
    await advance(199);
    expect(find).toHaveBeenCalledTimes(200);
    // A job the ledger does not know takes no room.
    await t.rotator.advanceHub({ key: KEY, targetVersion: 'e'.repeat(32), hubs: [] }, t.invocation);
    await advance(0);
    expect(find).toHaveBeenCalledTimes(201);
    await advance(200); // the 201st: the oldest (0) makes room
    await advance(1);
    expect(find).toHaveBeenCalledTimes(202);
    await advance(0);
    expect(find).toHaveBeenCalledTimes(203);
  });

  it('a job the ledger does not know is asked for again (it may be opened meanwhile)', async () => {
    const t = fakeRotator();
    const find = vi.spyOn(t.jobs, 'find');
    const message = { key: KEY, targetVersion: 'a'.repeat(32), hubs: [] };
    await t.rotator.advanceHub(message, t.invocation);
    await t.rotator.advanceHub(message, t.invocation);
    expect(find).toHaveBeenCalledTimes(2);
  });
});

describe('a message the host gave up on', () => {
  it('says so in the hub’s reason, without a last failure when there was none', async () => {
    const { t, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    await t.rotator.failPoisonedStep(message!, t.invocation);
    expect(t.jobs.taskOf(hubs[0]!)?.reason).toBe('its step kept failing and the host moved it to the poison queue');
  });

  it('a failure it cannot record leaves the hub unrecorded, for the next message to record', async () => {
    const { t, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    t.audit.faults.push(() => new UpstreamUnavailableError('the audit table'));
    await expect(t.rotator.failPoisonedStep(message!, t.invocation)).rejects.toThrow(UpstreamUnavailableError);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'failed', recorded: false });
  });

  it('a hub another instance wrote meanwhile is not failed or recorded by it', async () => {
    const { t, hubs } = await planned(['hub']);
    const [message] = t.steps.takeDue();
    vi.spyOn(t.jobs, 'update').mockResolvedValueOnce(undefined);
    await t.rotator.failPoisonedStep(message!, t.invocation);
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('pending');
    expect(t.audit.records).toEqual([]);
    expect(t.outcomes.sent).toEqual([]);
  });
});

describe('hubs with several encryption entries for the key', () => {
  it('an update running on a hub only partly on the target is someone else’s: a counted retry, no PUT', async () => {
    const { t, v2, hubs } = await planned(['two']);
    addEntry(t, hubs[0]!, v2.id);
    setState(t, hubs[0]!, 'Updating');
    await t.drain({ maxMessages: 1 });
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'pending', attempts: 1, waiting: 'backoff' });
    expect(t.jobs.taskOf(hubs[0]!)?.reason).toContain(`Hub ${hubs[0]} is being updated by another operation.`);
  });

  it('moves every entry; an update that left one behind fails the hub (HUB_KEY_NOT_APPLIED)', async () => {
    const t0 = fakeRotator();
    const v1 = t0.keyVault.addVersion(KEY);
    const v2 = t0.keyVault.addVersion(KEY);
    const hub = t0.hubs.add(hubId('two'), v1.id);
    addEntry(t0, hub, v1.id);
    await t0.rotator.sync(KEY, { dryRun: false }, t0.invocation);
    await t0.drain({ maxMessages: 1 });
    expect(t0.hubs.puts[0]!.body).toMatchObject({
      properties: { encryption: { keyVaultProperties: [{ keyIdentifier: v2.id }, { keyIdentifier: v2.id }] } },
    });
    entriesOf(t0, hub)[1]!.keyIdentifier = v1.id; // ARM kept the second entry on the old version
    await t0.drain();
    expect(t0.jobs.taskOf(hub)).toMatchObject({ state: 'failed', errorCode: 'HUB_KEY_NOT_APPLIED' });
    expect(lines(t0, 'hub.failed')[0]?.fields.from).toBe(`${v1.id},${v1.id}`);
    expect(t0.audit.records[0]?.fromVersion).toBe(`${v1.version},${v1.version}`);
  });
});

describe('an update ARM reports as failed', () => {
  it('for ARM’s own trouble (ServiceUnavailable, …) is retried: a counted attempt, then a new read and PUT', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    t.hubs.failNextOperations.push('ServiceUnavailable: the service is busy.');
    await t.drain({ until: () => t.jobs.taskOf(hubs[0]!)?.attempts === 1 });
    const task = t.jobs.taskOf(hubs[0]!)!;
    expect(task).toMatchObject({
      state: 'pending',
      attempts: 1,
      waiting: 'backoff',
      errorCode: 'UPSTREAM_UNAVAILABLE',
    });
    expect(task.operationUrl).toBeUndefined();
    expect(task.updateStartedAt).toBeUndefined();
    expect(task.reason).toBe(
      `ARM reported the update of hub ${hubs[0]} as failed: ServiceUnavailable: the service is busy. (attempt 1 of 3; will retry)`,
    );
    const retriedAt = task.notBefore!.getTime();
    // (FakeHubs would apply the ended operation's rollback again once the hub is Updating anew: forget it.)
    t.hubs.operations.clear();
    await t.drain();
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.hubs.puts).toHaveLength(2);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', attempts: 1, durationMs: 60_000 });
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(retriedAt - START).toBe(60_000 + 30_000);
  });

  it('for any other code is final, with ARM’s text (trailing dots trimmed), even if it names a transient code later', async () => {
    const { t, hubs } = await planned(['hub']);
    t.hubs.failNextOperations.push('KeyVaultAccessDenied: vault v1.2 answered GatewayTimeout...');
    await t.drain();
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({
      state: 'failed',
      attempts: 1,
      errorCode: 'HUB_UPDATE_FAILED',
      reason: `ARM reported the update of hub ${hubs[0]} as failed: KeyVaultAccessDenied: vault v1.2 answered GatewayTimeout.`,
    });
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
  });

  it('without an error text is final, and says only that it failed', async () => {
    const { t, hubs } = await planned(['hub']);
    t.hubs.updateMs = 0;
    vi.spyOn(t.hubs, 'operationState').mockResolvedValue({ status: 'failed' });
    await t.drain();
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({
      state: 'failed',
      errorCode: 'HUB_UPDATE_FAILED',
      reason: `ARM reported the update of hub ${hubs[0]} as failed.`,
    });
  });
});

describe('our own PUT the ledger missed', () => {
  it('rolled back: read and written again, counted as an attempt', async () => {
    const { t, v1, v2, hubs } = await planned(['ours']);
    entriesOf(t, hubs[0]!)[0]!.keyIdentifier = v2.id;
    setState(t, hubs[0]!, 'Updating');
    await t.drain({ maxMessages: 1 });
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'updating', waiting: 'operation' });
    // ARM rolls the update back.
    entriesOf(t, hubs[0]!)[0]!.keyIdentifier = v1.id;
    setState(t, hubs[0]!, 'Succeeded');
    await t.drain({ maxMessages: 1 });
    const task = t.jobs.taskOf(hubs[0]!)!;
    expect(task).toMatchObject({
      state: 'pending',
      attempts: 1,
      waiting: 'backoff',
      errorCode: 'UPSTREAM_UNAVAILABLE',
    });
    expect(task.reason).toContain(`The update of hub ${hubs[0]} ended without the new key.`);
    expect(task.updateStartedAt).toBeUndefined();
    expect(t.hubs.puts).toHaveLength(0);
    await t.drain();
    expect(t.hubs.acceptedPuts(hubs[0]!)).toBe(1);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', attempts: 1, durationMs: 60_000 });
  });

  it('still running when looked at again: waited for, no PUT', async () => {
    const { t, v2, hubs } = await planned(['ours']);
    entriesOf(t, hubs[0]!)[0]!.keyIdentifier = v2.id;
    setState(t, hubs[0]!, 'Updating');
    await t.drain({ maxMessages: 3 });
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'updating', waiting: 'operation', attempts: 0 });
    expect(t.hubs.puts).toHaveLength(0);
  });
});

describe('the key’s versions, read for each hub’s decision', () => {
  it('are reused for 30 s by the steps of an instance, then read again', async () => {
    const { t, hubs } = await planned(['a', 'b', 'c', 'd']);
    const [message] = t.steps.takeDue();
    const list = vi.spyOn(t.keyVault, 'listVersions');
    const step = (hub: string) => t.rotator.advanceHub({ ...message!, hubs: [{ hubId: hub, step: 0 }] }, t.invocation);
    await step(hubs[0]!);
    expect(list).toHaveBeenCalledTimes(1);
    t.clock.advance(30_000);
    await step(hubs[1]!);
    expect(list).toHaveBeenCalledTimes(1);
    t.clock.advance(1);
    await step(hubs[2]!);
    expect(list).toHaveBeenCalledTimes(2);
    await step(hubs[3]!);
    expect(list).toHaveBeenCalledTimes(2);
  });

  it('are read again at once for a hub on a version they do not know: a hub moved to a newer one is not downgraded', async () => {
    const { t, v2, hubs } = await planned(['a', 'b']);
    const [message] = t.steps.takeDue();
    const step = (hub: string) => t.rotator.advanceHub({ ...message!, hubs: [{ hubId: hub, step: 0 }] }, t.invocation);
    await step(hubs[0]!);
    const v3 = t.keyVault.addVersion(KEY, { version: 'ABCDEF'.padEnd(32, '0') });
    entriesOf(t, hubs[1]!)[0]!.keyIdentifier = v3.id;
    addEntry(t, hubs[1]!, v2.id);
    const list = vi.spyOn(t.keyVault, 'listVersions');
    await step(hubs[1]!);
    expect(list).toHaveBeenCalledTimes(1);
    expect(t.jobs.taskOf(hubs[1]!)).toMatchObject({ state: 'skipped' });
    expect(t.jobs.taskOf(hubs[1]!)?.reason).toContain(v3.version);
    expect(t.hubs.puts.map((p) => p.hubId)).toEqual([hubs[0]]);
  });

  it('a failed read is not reused: the next step reads them again', async () => {
    const { t, hubs } = await planned(['hub']);
    vi.spyOn(t.keyVault, 'listVersions').mockRejectedValueOnce(new UpstreamUnavailableError('vault 503'));
    await t.drain();
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', attempts: 1 });
  });
});

describe('the record of a hub’s final state', () => {
  it('moved: an info log, an audit record and a HubKeyUpdated outcome with the same id and the move’s duration', async () => {
    const { t, v1, v2, hubs } = await planned(['Hub-A']);
    await t.drain();
    const task = t.jobs.taskOf(hubs[0]!)!;
    const jobId = jobIdOf(KEY, v2.version);
    const id = `${jobId}|${hubs[0]!.toLowerCase().replace(/\//g, '|')}`;
    expect(id).toMatch(/\|hub-a$/);
    expect(t.audit.records).toStrictEqual([
      {
        id,
        time: task.finishedAt,
        keyId: `${VAULT}/keys/hub-cmk`,
        trigger: 'manual-sync',
        correlationId: 'inv-1',
        hubId: hubs[0],
        result: 'moved',
        fromVersion: v1.version,
        toVersion: v2.version,
        durationMs: 60_000,
      },
    ]);
    expect(t.outcomes.sent).toStrictEqual([
      {
        id,
        type: 'CmkRotator.HubKeyUpdated',
        subject: hubs[0],
        data: {
          hubId: hubs[0],
          hubName: 'Hub-A',
          keyId: `${VAULT}/keys/hub-cmk`,
          from: [v1.id],
          to: v2.id,
          result: 'moved',
          jobId,
          attempts: 0,
          durationMs: 60_000,
          correlationId: 'inv-1',
        },
      },
    ]);
    expect(lines(t, 'hub.moved')).toStrictEqual([
      {
        level: 'info',
        event: 'hub.moved',
        fields: { key: LABEL, hub: hubs[0], from: v1.id, to: v2.id, jobId, durationMs: 60_000 },
      },
    ]);
  });

  it('failed: an error log, the reason and code in the record and a HubKeyUpdateFailed outcome; no duration', async () => {
    const { t, v1, v2, hubs } = await planned(['sticky']);
    t.hubs.ignoreKeyChangeFor.add(hubs[0]!);
    await t.drain();
    const task = t.jobs.taskOf(hubs[0]!)!;
    const jobId = jobIdOf(KEY, v2.version);
    expect(task.reason).toBeTruthy();
    expect(t.audit.records).toStrictEqual([
      {
        id: `${jobId}|${hubs[0]!.toLowerCase().replace(/\//g, '|')}`,
        time: task.finishedAt,
        keyId: `${VAULT}/keys/hub-cmk`,
        trigger: 'manual-sync',
        correlationId: 'inv-1',
        hubId: hubs[0],
        result: 'failed',
        fromVersion: v1.version,
        toVersion: v2.version,
        message: task.reason,
        errorCode: 'HUB_KEY_NOT_APPLIED',
      },
    ]);
    expect(t.outcomes.sent[0]!.type).toBe('CmkRotator.HubKeyUpdateFailed');
    expect(t.outcomes.sent[0]!.data).toStrictEqual({
      hubId: hubs[0],
      hubName: 'sticky',
      keyId: `${VAULT}/keys/hub-cmk`,
      from: [v1.id],
      to: v2.id,
      result: 'failed',
      jobId,
      attempts: 0,
      reason: task.reason,
      errorCode: 'HUB_KEY_NOT_APPLIED',
      correlationId: 'inv-1',
    });
    expect(lines(t, 'hub.failed')).toStrictEqual([
      {
        level: 'error',
        event: 'hub.failed',
        fields: {
          key: LABEL,
          hub: hubs[0],
          from: v1.id,
          to: v2.id,
          jobId,
          reason: task.reason,
          errorCode: 'HUB_KEY_NOT_APPLIED',
        },
      },
    ]);
  });

  it('already current or skipped: an audit record only, no outcome event', async () => {
    const { t, v2, hubs } = await planned(['current']);
    entriesOf(t, hubs[0]!)[0]!.keyIdentifier = v2.id;
    await t.drain();
    expect(t.audit.records.map((r) => r.result)).toEqual(['already-current']);
    expect(t.audit.records[0]).not.toHaveProperty('durationMs');
    expect(lines(t, 'hub.already-current')).toHaveLength(1);
    expect(lines(t, 'hub.already-current')[0]!.level).toBe('info');
    expect(t.outcomes.sent).toEqual([]);
  });

  it('of a job an event opened carries the event’s id', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    const v2 = t.keyVault.addVersion(KEY);
    const event = keyVaultEvent('KeyNewVersionCreated', v2.id);
    await t.rotator.handleEvent(event, t.invocation);
    await t.drain();
    expect(t.audit.records.filter((r) => r.hubId)).toEqual([
      expect.objectContaining({ result: 'moved', eventId: event.id, trigger: 'event' }),
    ]);
  });

  it('a hub on a versionless reference is recorded with an empty from-version', async () => {
    const { t, hubs } = await planned(['follows'], {}, (t) => {
      entriesOf(t, hubId('follows'))[0]!.keyIdentifier = `${VAULT}/keys/hub-cmk`;
    });
    await t.drain();
    expect(t.jobs.taskOf(hubs[0]!)?.state).toBe('skipped');
    expect(t.audit.records.map((r) => r.fromVersion)).toEqual(['']);
  });

  it('failing to note that the record is out is only logged (step.unnoted); the record is repeated later', async () => {
    const { t, v2, hubs } = await planned(['hub']);
    const update = t.jobs.update.bind(t.jobs);
    vi.spyOn(t.jobs, 'update').mockImplementation((job, task) =>
      task.recorded ? Promise.reject(new UpstreamUnavailableError('the ledger')) : update(job, task),
    );
    await t.drain();
    expect(t.hubs.keyOf(hubs[0]!)).toBe(v2.id);
    expect(t.jobs.taskOf(hubs[0]!)).toMatchObject({ state: 'moved', recorded: false });
    expect(lines(t, 'step.unnoted')).toEqual([
      {
        level: 'warn',
        event: 'step.unnoted',
        fields: { hub: hubs[0], errorCode: 'UPSTREAM_UNAVAILABLE', message: 'the ledger' },
      },
    ]);
  });
});
