// The storage adapters against Azurite with the real @azure/data-tables client.
import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { AuditTableAdapter } from '../../src/adapters/auditTable';
import { JobsTableAdapter } from '../../src/adapters/jobsTable';
import { TableLeaseLock } from '../../src/adapters/leaseLock';
import type { AuditRecord, RotationJob } from '../../src/domain/ports';

const table = (prefix: string) =>
  TableClient.fromConnectionString(
    inject('storageConnectionString'),
    `${prefix}${randomUUID().replace(/-/g, '')}`.slice(0, 60),
    {
      allowInsecureConnection: true,
    },
  );
const key = () => ({ vaultUrl: 'https://demo.vault.azure.net', name: `k-${randomUUID().slice(0, 8)}` });

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
      expiresAt: new Date(Date.now() - 1000),
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
    ).rejects.toMatchObject({
      code: 'BUSY',
      transient: true,
    });
  });
});

describe('AuditTableAdapter', () => {
  it('lists a key’s records newest first, page by page', async () => {
    const audit = new AuditTableAdapter(table('audit'));
    const k = key();
    const records: AuditRecord[] = Array.from({ length: 5 }, (_, i) => ({
      id: randomUUID(),
      time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
      keyId: `${k.vaultUrl}/keys/${k.name}`,
      trigger: 'event',
      correlationId: 'c',
      result: 'moved',
      hubId: `/subscriptions/s/resourceGroups/r/providers/Microsoft.Devices/IotHubs/hub-${i}`,
    }));
    await audit.append(records);
    await audit.append([{ ...records[0]!, id: randomUUID(), keyId: 'https://demo.vault.azure.net/keys/other' }]);

    const first = await audit.list(k, 3);
    expect(first.records.map((r) => r.hubId?.slice(-5))).toEqual(['hub-4', 'hub-3', 'hub-2']);
    expect(first.records[0]?.time).toEqual(records[4]!.time);
    const second = await audit.list(k, 3, first.continuationToken);
    expect(second.records.map((r) => r.hubId?.slice(-5))).toEqual(['hub-1', 'hub-0']);
    expect(second.continuationToken).toBeUndefined();
  });
});

describe('JobsTableAdapter', () => {
  const job = (k: ReturnType<typeof key>): RotationJob => ({
    key: k,
    targetVersion: 'v2',
    targetId: `${k.vaultUrl}/keys/${k.name}/v2`,
    trigger: 'event',
    correlationId: 'c',
    openedAt: new Date(),
  });

  it('opens a job once, joins it later with new hubs, and lets only one invocation claim a task', async () => {
    const jobs = new JobsTableAdapter(table('jobs'));
    const j = job(key());
    const hub = (n: string) => ({
      hubId: `/subscriptions/s/resourceGroups/r/providers/Microsoft.Devices/IotHubs/${n}`,
      hubName: n,
      from: ['x/v1'],
    });
    const [mine, theirs] = await Promise.all([jobs.open(j, [hub('a'), hub('b')]), jobs.open(j, [hub('a'), hub('b')])]);
    expect(mine.map((t) => t.hubName).sort()).toEqual(['a', 'b']);
    expect(theirs.map((t) => t.hubName).sort()).toEqual(['a', 'b']);
    expect((await jobs.open(j, [hub('c')])).map((t) => t.hubName).sort()).toEqual(['a', 'b', 'c']);

    const task = mine.find((t) => t.hubName === 'a')!;
    const other = theirs.find((t) => t.hubName === 'a')!;
    const claimed = await jobs.claim(j, task, new Date(Date.now() + 60_000));
    expect(claimed).toBeDefined();
    expect(await jobs.claim(j, other, new Date(Date.now() + 60_000))).toBeUndefined();

    await jobs.save(j, { ...claimed!, state: 'moved', attempts: 1 });
    const after = await jobs.open(j, []);
    expect(after.find((t) => t.hubName === 'a')).toMatchObject({ state: 'moved', attempts: 1, from: ['x/v1'] });
    expect((await jobs.unfinished()).some((u) => u.key.name === j.key.name)).toBe(true);
    for (const t of after.filter((x) => x.state === 'pending')) {
      const c = await jobs.claim(j, t, new Date());
      await jobs.save(j, { ...c!, state: 'already-current' });
    }
    expect((await jobs.unfinished()).some((u) => u.key.name === j.key.name)).toBe(false);
  });
});
