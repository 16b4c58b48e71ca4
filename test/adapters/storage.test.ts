// The table adapters against Azurite with the real @azure/data-tables client: the key lease, the audit log, the
// jobs ledger and the ARM budget's buckets.
import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { TableBucketStore } from '../../src/adapters/armBudgetTable';
import { AuditTableAdapter } from '../../src/adapters/auditTable';
import { JobsTableAdapter } from '../../src/adapters/jobsTable';
import { TableLeaseLock } from '../../src/adapters/leaseLock';
import type { AuditRecord, HubTask, RotationJob } from '../../src/domain/ports';

const tableName = (prefix: string) => `${prefix}${randomUUID().replace(/-/g, '')}`.slice(0, 60);
const client = (name: string) =>
  TableClient.fromConnectionString(inject('storageConnectionString'), name, { allowInsecureConnection: true });
const table = (prefix: string) => client(tableName(prefix));
const key = () => ({ vaultUrl: 'https://demo.vault.azure.net', name: `k-${randomUUID().slice(0, 8)}` });
const hubIdOf = (n: string) => `/subscriptions/s/resourceGroups/r/providers/Microsoft.Devices/IotHubs/${n}`;
const hub = (n: string) => ({ hubId: hubIdOf(n), hubName: n, from: [`https://demo.vault.azure.net/keys/k/v1${n}`] });

describe('TableLeaseLock', () => {
  it('lets one holder at a time work on a key, across lock instances (as across app instances)', async () => {
    const t = table('locks');
    const [a, b] = [new TableLeaseLock(t, { pollMs: 20 }), new TableLeaseLock(t, { pollMs: 20 })];
    const k = key();
    let inside = 0;
    let overlap = false;
    const work = async () => {
      inside++;
      if (inside > 1) overlap = true;
      await new Promise((r) => setTimeout(r, 50));
      inside--;
    };
    await Promise.all([
      a.runExclusive(k, work),
      b.runExclusive(k, work),
      a.runExclusive(k, work),
      b.runExclusive(k, work),
    ]);
    expect(overlap).toBe(false);
  });

  it('takes over a lease whose holder died, and answers BUSY while a live holder keeps it', async () => {
    const t = table('locks');
    const k = key();
    await t.createTable();
    const partitionKey = `demo.vault.azure.net|${k.name}`;
    await t.createEntity({
      partitionKey,
      rowKey: 'create-version',
      holder: 'dead',
      expiresAt: new Date(Date.now() - 1),
    });
    expect(await new TableLeaseLock(t).runExclusive(k, () => Promise.resolve('ran'))).toBe('ran');

    await t.createEntity({
      partitionKey,
      rowKey: 'create-version',
      holder: 'alive',
      expiresAt: new Date(Date.now() + 60_000),
    });
    await expect(
      new TableLeaseLock(t, { waitMs: 100, pollMs: 20 }).runExclusive(k, () => Promise.resolve()),
    ).rejects.toMatchObject({ code: 'BUSY', transient: true });
  });
});

describe('AuditTableAdapter', () => {
  const records = (k: ReturnType<typeof key>): AuditRecord[] =>
    Array.from({ length: 5 }, (_, i) => ({
      id: randomUUID(),
      time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
      keyId: `${k.vaultUrl}/keys/${k.name}`,
      trigger: 'event',
      correlationId: 'c',
      result: 'moved',
      hubId: hubIdOf(`hub-${i}`),
    }));

  it('lists a key’s records newest first, page by page', async () => {
    const audit = new AuditTableAdapter(table('audit'));
    const k = key();
    const written = records(k);
    await audit.append(written);
    await audit.append([{ ...written[0]!, id: randomUUID(), keyId: 'https://demo.vault.azure.net/keys/other' }]);

    const first = await audit.list(k, 3);
    expect(first.records.map((r) => r.hubId?.slice(-5))).toEqual(['hub-4', 'hub-3', 'hub-2']);
    expect(first.records[0]?.time).toEqual(written[4]!.time);
    const second = await audit.list(k, 3, first.continuationToken);
    expect(second.records.map((r) => r.hubId?.slice(-5))).toEqual(['hub-1', 'hub-0']);
    expect(second.continuationToken).toBeUndefined();
  });

  it('upserts: a record written again (same id and time, after a crash) is stored once, as last written', async () => {
    const audit = new AuditTableAdapter(table('audit'));
    const k = key();
    const [record] = records(k);
    await audit.append([record!]);
    await audit.append([{ ...record!, correlationId: 'again' }]);
    const page = await audit.list(k, 10);
    expect(page.records).toEqual([expect.objectContaining({ id: record!.id, correlationId: 'again' })]);
  });

  it('refuses a malformed continuation token (INVALID_INPUT, not unavailable)', async () => {
    const audit = new AuditTableAdapter(table('audit'));
    const k = key();
    const notJson = Buffer.from('{"nextPartitionKey":').toString('base64');
    for (const token of ['not a token!', notJson, Buffer.from('{"nextRowKey":"x"}').toString('base64')]) {
      await expect(audit.list(k, 2, token)).rejects.toMatchObject({
        code: 'INVALID_INPUT',
        problems: [expect.objectContaining({ field: 'continuationToken' })],
      });
    }
  });

  it("never reads another key's history with that key's continuation token", async () => {
    const audit = new AuditTableAdapter(table('audit'));
    const [k, other] = [key(), key()];
    await audit.append(records(other));
    const otherToken = (await audit.list(other, 2)).continuationToken!;
    expect(otherToken).toBeDefined();
    expect((await audit.list(k, 2, otherToken)).records).toEqual([]);
  });
});

describe('JobsTableAdapter', () => {
  const job = (k: ReturnType<typeof key>, fields: Partial<RotationJob> = {}): RotationJob => ({
    key: k,
    targetVersion: 'v2',
    targetId: `${k.vaultUrl}/keys/${k.name}/v2`,
    trigger: 'event',
    correlationId: 'c',
    openedAt: new Date('2026-06-01T00:00:00Z'),
    ...fields,
  });

  it('opens a job once and joins it later, each hub added by exactly one of the openers', async () => {
    const jobs = new JobsTableAdapter(table('jobs'));
    const j = job(key(), { createdVersion: 'v2', eventId: 'evt-1' });
    expect(await jobs.find(j.key, 'v2')).toBeUndefined();
    const [mine, theirs] = await Promise.all([jobs.open(j, [hub('a'), hub('b')]), jobs.open(j, [hub('a'), hub('b')])]);
    expect(mine.tasks.map((t) => t.hubName).sort()).toEqual(['a', 'b']);
    expect(theirs.tasks.map((t) => t.hubName).sort()).toEqual(['a', 'b']);
    expect([...mine.added, ...theirs.added].sort()).toEqual([hubIdOf('a'), hubIdOf('b')]);
    expect(mine.tasks.find((t) => t.hubName === 'a')).toMatchObject({
      state: 'pending',
      step: 0,
      attempts: 0,
      from: hub('a').from,
      etag: expect.any(String),
    });

    const joined = await jobs.open(j, [hub('a'), hub('c')]);
    expect(joined.added).toEqual([hubIdOf('c')]);
    expect(joined.tasks.map((t) => t.hubName).sort()).toEqual(['a', 'b', 'c']);
    expect(await jobs.find(j.key, 'V2')).toEqual({ ...j });

    // Once every task's first step is queued the job is planned; its tasks stay as they were.
    await jobs.markPlanned(j);
    expect(await jobs.find(j.key, 'v2')).toEqual({ ...j, planned: true });
    expect((await jobs.tasks(j)).map((t) => [t.hubName, t.state, t.step])).toEqual(
      expect.arrayContaining([
        ['a', 'pending', 0],
        ['b', 'pending', 0],
        ['c', 'pending', 0],
      ]),
    );
  });

  it('adds every hub when two openers race with different hub lists', async () => {
    // Opener B reads the (empty) job before A's tasks land, then A's transaction commits before B's: B's
    // transaction fails on the hub both add, and B must still count the hub only it adds.
    const name = tableName('jobs');
    const [ca, cb] = [client(name), client(name)];
    let bReady!: () => void;
    let aDone!: () => void;
    const bIsReady = new Promise<void>((resolve) => (bReady = resolve));
    const aIsDone = new Promise<void>((resolve) => (aDone = resolve));
    const realA = ca.submitTransaction.bind(ca);
    ca.submitTransaction = async (actions, options) => {
      await bIsReady;
      return realA(actions, options).finally(aDone);
    };
    const realB = cb.submitTransaction.bind(cb);
    cb.submitTransaction = async (actions, options) => {
      bReady();
      await aIsDone;
      return realB(actions, options);
    };
    const j = job(key());
    const [a, b] = await Promise.all([
      new JobsTableAdapter(ca).open(j, [hub('a'), hub('b')]),
      new JobsTableAdapter(cb).open(j, [hub('b'), hub('c')]),
    ]);
    expect(b.tasks.map((t) => t.hubName).sort()).toEqual(['a', 'b', 'c']);
    // Each hub's first step message is sent by the opener that added it: a hub nobody added would never move.
    expect([...a.added, ...b.added].sort()).toEqual([hubIdOf('a'), hubIdOf('b'), hubIdOf('c')]);
  });

  it('updates a task only if nobody changed it since it was read, and stores every field as given', async () => {
    const jobs = new JobsTableAdapter(table('jobs'));
    const j = job(key());
    const { tasks } = await jobs.open(j, [hub('a')]);
    const read = tasks[0]!;
    const changed: HubTask = {
      ...read,
      state: 'updating',
      step: 3,
      attempts: 2,
      leaseUntil: new Date('2026-06-01T00:01:00Z'),
      notBefore: new Date('2026-06-01T00:00:10Z'),
      waiting: 'operation',
      operationUrl: 'https://management.azure.com/operations/1',
      updateStartedAt: new Date('2026-06-01T00:00:00Z'),
      recorded: false,
      durationMs: 1234,
      errorCode: 'THROTTLED',
      reason: 'ARM asked us to wait',
    };
    const saved = await jobs.update(j, changed);
    expect(saved?.etag).toBeDefined();
    expect(saved?.etag).not.toBe(read.etag);
    expect(await jobs.update(j, { ...read, state: 'failed' })).toBeUndefined(); // a stale copy
    const [reread] = await jobs.tasksOf(j, [hubIdOf('a')]);
    const { etag: _e, updatedAt, ...stored } = reread!;
    const { etag: _s, ...expected } = changed;
    expect(stored).toEqual(expected);
    expect(updatedAt).toBeInstanceOf(Date);

    // A write without the optional fields removes them.
    const { leaseUntil: _l, notBefore: _n, waiting: _w, errorCode: _c, reason: _r, ...plain } = saved!;
    const finalTask = await jobs.update(j, { ...plain, state: 'moved', recorded: true, finishedAt: new Date(0) });
    expect(finalTask).toBeDefined();
    const [after] = await jobs.tasksOf(j, [hubIdOf('a')]);
    expect(after).toMatchObject({ state: 'moved', recorded: true, finishedAt: new Date(0) });
    for (const field of ['leaseUntil', 'notBefore', 'waiting', 'errorCode', 'reason']) {
      expect(after).not.toHaveProperty(field);
    }
    expect(await jobs.update(job(key()), { ...after!, state: 'failed' })).toBeUndefined(); // no such task
  });

  it('reads the tasks of many hubs at once (more than one filter holds), leaving out hubs the job does not list', async () => {
    const jobs = new JobsTableAdapter(table('jobs'));
    const k = key();
    const j = job(k);
    const names = Array.from({ length: 40 }, (_, i) => `hub-${i}`);
    const { tasks } = await jobs.open(j, names.map(hub));
    // Another job of the key, and another key, with the same hubs: their tasks are not this job's.
    await jobs.open(job(k, { targetVersion: 'v3' }), names.map(hub));
    await jobs.open(job(key()), names.map(hub));
    const claimed = await jobs.update(j, { ...tasks.find((t) => t.hubName === 'hub-20')!, step: 4 });

    const wanted = [
      ...names.slice(0, 33).map(hubIdOf), // three filters' worth (14 + 14 + 5)
      hubIdOf('unknown'),
      hubIdOf('hub-3'), // asked twice
      hubIdOf('hub-39'),
    ];
    const read = await jobs.tasksOf(j, wanted);

    expect(read.map((t) => t.hubName).sort()).toEqual([...names.slice(0, 33), 'hub-39'].sort());
    expect(read.find((t) => t.hubName === 'hub-20')).toMatchObject({ step: 4, etag: claimed!.etag });
    expect(read.every((t) => t.etag && t.state === 'pending' && t.from.length === 1)).toBe(true);
    expect(await jobs.tasksOf(j, [hubIdOf('unknown')])).toEqual([]);
    expect(await jobs.tasksOf(j, [])).toEqual([]);
    expect(await jobs.tasksOf(job(k, { targetVersion: 'v9' }), names.map(hubIdOf))).toEqual([]);
    // What it reads can be written back: the ETags are the rows' own.
    expect(await jobs.update(j, { ...read.find((t) => t.hubName === 'hub-39')!, step: 1 })).toBeDefined();
  });

  it('gives usable ETags back for updates sent together in one transaction', async () => {
    const jobs = new JobsTableAdapter(table('jobs'));
    const j = job(key());
    const names = Array.from({ length: 30 }, (_, i) => `hub-${i}`);
    const { tasks } = await jobs.open(j, names.map(hub));
    const claimed = await Promise.all(tasks.map((t) => jobs.update(j, { ...t, step: 1 })));
    expect(claimed.every((t) => t !== undefined)).toBe(true);
    const done = await Promise.all(claimed.map((t) => jobs.update(j, { ...t!, step: 2, state: 'moved' })));
    expect(done.every((t) => t !== undefined)).toBe(true);
    expect((await jobs.tasks(j)).every((t) => t.state === 'moved' && t.step === 2)).toBe(true);
  });

  it('lists jobs with open tasks as unfinished until every task is final, and a key’s jobs newest first', async () => {
    const jobs = new JobsTableAdapter(table('jobs'));
    const k = key();
    const older = job(k, { targetVersion: 'v1', openedAt: new Date('2026-01-01T00:00:00Z') });
    const newer = job(k);
    await jobs.open(older, [hub('a')]);
    const { tasks } = await jobs.open(newer, [hub('a'), hub('b')]);
    expect((await jobs.unfinished()).map((u) => u.targetVersion).sort()).toEqual(['v1', 'v2']);
    expect((await jobs.jobsOf(k)).map((u) => u.targetVersion)).toEqual(['v2', 'v1']);
    await jobs.update(newer, { ...tasks[0]!, state: 'updating' });
    await jobs.update(newer, { ...tasks[1]!, state: 'failed' });
    expect((await jobs.unfinished()).map((u) => u.targetVersion).sort()).toEqual(['v1', 'v2']);
    const [current] = await jobs.tasksOf(newer, [tasks[0]!.hubId]);
    await jobs.update(newer, { ...current!, state: 'moved' });
    expect((await jobs.unfinished()).map((u) => u.targetVersion)).toEqual(['v1']);
  });
});

describe('TableBucketStore', () => {
  it('creates a bucket once and changes it only with the ETag last read', async () => {
    const store = new TableBucketStore(table('budget'));
    const id = '00000000-0000-0000-0000-00000000000a|writes';
    expect(await store.read(id)).toBeUndefined();
    const created = await store.write(id, { tokens: 195, at: 1_000, pausedUntil: 0 }, undefined);
    expect(created).toEqual(expect.any(String));
    expect(await store.write(id, { tokens: 1, at: 1_000, pausedUntil: 0 }, undefined)).toBeUndefined();

    const read = await store.read(id);
    expect(read).toEqual({ state: { tokens: 195, at: 1_000, pausedUntil: 0 }, etag: created });
    const changed = await store.write(id, { tokens: -2.5, at: 2_000, pausedUntil: 9_000 }, read!.etag);
    expect(changed).toEqual(expect.any(String));
    expect(changed).not.toBe(created);
    expect(await store.write(id, { tokens: 100, at: 3_000, pausedUntil: 0 }, read!.etag)).toBeUndefined();
    expect((await store.read(id))?.state).toEqual({ tokens: -2.5, at: 2_000, pausedUntil: 9_000 });
    expect(await store.read('00000000-0000-0000-0000-00000000000a|reads')).toBeUndefined();
  });
});
