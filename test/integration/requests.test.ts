// Requests and events that must not rotate twice, or at all: an operator's rotation retried after a 503 with the same
// requestId, a forged KeyNearExpiry or KeyExpired for a version nowhere near its expiry, and a foreign vault's
// events arriving in a burst.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUB_A, SUB_B, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import {
  acceptedPuts,
  auditOf,
  expectAllOn,
  hub,
  jobIdFor,
  keyIdOf,
  keyVaultEvent,
  resultsOf,
  settleIfAny,
  versions,
  withEventsLimitedTo,
} from '../support/fleet';

describe('requests and events that must not rotate again', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ settings: { ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *' } });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it('a rotation retried with its requestId after a 503 reuses the version the first attempt made, and audits it once', async () => {
    const key = await h.createKey('retry-cmk');
    const refs = [hub(SUB_A, 'retry-1'), hub(SUB_B, 'retry-2')];
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    const audit = h.table('RotationAudit');
    const request = { keyId: keyIdOf('retry-cmk'), reason: 'change 4711', requestId: 'change-4711' };

    // The audit table is gone for a while (Key Vault's own event about the new version goes nowhere meanwhile).
    const failed = await withEventsLimitedTo(h, ['Microsoft.KeyVault.KeyExpired'], async () => {
      await audit.deleteTable();
      const first = await h.api('POST', '/api/keys/rotate', request);
      const second = await h.api('POST', '/api/keys/rotate', request);
      await audit.createTable();
      return [first, second];
    });

    // Both attempts were answered 503 (nothing could be recorded), yet the key got exactly one new version.
    expect(failed.map((r) => [r.status, (r.body as { error?: { code?: string } }).error?.code])).toEqual([
      [503, 'UPSTREAM_UNAVAILABLE'],
      [503, 'UPSTREAM_UNAVAILABLE'],
    ]);
    expect(await versions(h, 'retry-cmk')).toHaveLength(2);
    expect(refs.every((ref) => h.hubKey(ref) === key.id)).toBe(true);

    const retried = await h.api('POST', '/api/keys/rotate', request);

    expect(retried.status).toBe(200);
    expect(await versions(h, 'retry-cmk')).toHaveLength(2);
    const created = (await versions(h, 'retry-cmk')).find((v) => v.version !== key.properties.version)!;
    expect(created.tags).toMatchObject({ 'cmk-rotator-request-id': 'change-4711' });
    expect(retried.body).toMatchObject({
      createdVersion: created.id,
      jobId: jobIdFor(created.id!),
      decision: expect.stringContaining('change-4711'),
    });
    expect(resultsOf(await h.settle(retried.body.jobId as string))).toEqual({ 'retry-1': 'moved', 'retry-2': 'moved' });
    await expectAllOn(h, refs, created.id!);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
    // The record the first attempt could not write was written by the retry, once; so was the outcome.
    const rotated = (await auditOf(h, 'retry-cmk')).filter((r) => r.result === 'rotated');
    expect(rotated).toMatchObject([{ toVersion: created.version, trigger: 'manual-rotate' }]);
    const outcomes = h.outcomes().filter((o) => o.type === 'CmkRotator.KeyRotated' && o.subject === created.id);
    expect(outcomes).toHaveLength(1);

    // Once more, with the rotation done: still the same version, nothing moves again.
    const again = await h.api('POST', '/api/keys/rotate', request);
    expect(again.body).toMatchObject({ status: 'succeeded', createdVersion: created.id });
    expect(await versions(h, 'retry-cmk')).toHaveLength(2);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(1);
  }, 60_000);

  it('a forged KeyNearExpiry or KeyExpired for a version far from expiry creates nothing and is audited ignored', async () => {
    const key = await h.createKey('forged-cmk', { expiresInDays: 365 });
    const ref = hub(SUB_A, 'forged-hub');
    await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.clearRequests();

    const nearExpiry = keyVaultEvent('KeyNearExpiry', key.id!);
    const expired = keyVaultEvent('KeyExpired', key.id!);
    expect(await h.deliver([nearExpiry])).toBe(202);
    expect(await h.deliver([expired])).toBe(202);

    expect(await versions(h, 'forged-cmk')).toHaveLength(1);
    const ignored = (await auditOf(h, 'forged-cmk')).filter((r) => r.result === 'ignored');
    expect(ignored.map((r) => [r.eventId, r.fromVersion]).sort()).toEqual(
      [nearExpiry.id, expired.id].map((id) => [id, key.properties.version]).sort(),
    );
    expect(ignored.every((r) => /ignored/.test(r.message ?? ''))).toBe(true);
    expect((await auditOf(h, 'forged-cmk')).filter((r) => r.result === 'rotated')).toEqual([]);
    expect(
      h.outcomes().filter((o) => o.type === 'CmkRotator.KeyRotated' && o.subject.includes('/forged-cmk/')),
    ).toEqual([]);
    expect(h.stack.arm.requests().filter((r) => r.method === 'PUT')).toEqual([]);
    expect(h.hubKey(ref)).toBe(key.id);
  });

  it("a burst of a foreign vault's events is refused, with one audit record rather than one per event", async () => {
    const foreignKey = 'https://evil.vault.azure.net/keys/hub-cmk/0123456789abcdef0123456789abcdef';
    const events = Array.from({ length: 5 }, (_, i) => ({
      ...keyVaultEvent('KeyNearExpiry', foreignKey),
      id: `foreign-${i}`,
    }));

    for (const event of events) expect(await h.deliver([event])).toBe(202);

    const rows = [];
    for await (const row of h.table('RotationAudit').listEntities<{ keyId: string; result: string }>()) {
      if (row.keyId?.startsWith('https://evil.vault.azure.net/')) rows.push(row);
    }
    expect(rows.map((r) => r.result)).toEqual(['refused']);
    // Every one of them was refused (and logged), none acted on.
    const refused = h.host.logs.filter(
      (l) =>
        (l.event === 'event.refused' || l.event === 'rotation.failed') && l.fields.errorCode === 'VAULT_NOT_ALLOWED',
    );
    expect(refused).toHaveLength(events.length);
    expect((await h.api('GET', `/api/rotations?keyId=${encodeURIComponent(foreignKey)}`)).status).toBe(403);
  });
});
