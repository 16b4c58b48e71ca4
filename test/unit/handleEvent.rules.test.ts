// What a Key Vault event leaves behind for operators: the log lines and their fields, the decision the report gives,
// the audit records of events ignored, refused or failed, and when a foreign vault's refusals are audited.
import { describe, expect, it } from 'vitest';
import { KEY, VAULT, fakeRotator, hubId, keyVaultEvent } from '../fakes/rotator';
import type { FakeRotator } from '../fakes/rotator';

const DAY = 86_400_000;
const NOW = new Date('2026-06-01T00:00:00Z').getTime();
const LABEL = 'contoso.vault.azure.net/hub-cmk';
const KEY_URL = `${VAULT}/keys/hub-cmk`;
const FOREIGN = 'https://evil.vault.azure.net/keys/hub-cmk/0123456789abcdef';

const lines = (t: FakeRotator, event: string) => t.log.lines.filter((l) => l.event === event);

describe('an event of another type', () => {
  it('is logged as event.ignored with its id, type and why, and answered ignored', async () => {
    const t = fakeRotator();
    const event = {
      ...keyVaultEvent('KeyNearExpiry', `${KEY_URL}/abc`),
      eventType: 'Microsoft.KeyVault.SecretNearExpiry',
    };
    const report = await t.rotator.handleEvent(event, t.invocation);
    const why = 'event type Microsoft.KeyVault.SecretNearExpiry is not a key rotation trigger';
    expect(report).toMatchObject({ keyId: '', trigger: 'event', status: 'ignored', message: why, decision: why });
    expect(lines(t, 'event.ignored')).toEqual([
      {
        level: 'info',
        event: 'event.ignored',
        fields: { eventId: event.id, eventType: 'Microsoft.KeyVault.SecretNearExpiry', reason: why },
      },
    ]);
  });
});

describe('a key event', () => {
  it('is logged as event.received with its id, type, key and version', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const event = keyVaultEvent('KeyNewVersionCreated', v1.id);
    await t.rotator.handleEvent(event, t.invocation);
    expect(lines(t, 'event.received')).toEqual([
      {
        level: 'info',
        event: 'event.received',
        fields: { eventId: event.id, eventType: 'KeyNewVersionCreated', key: LABEL, version: v1.version },
      },
    ]);
  });

  it('a new version: the report says it was created', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    const v2 = t.keyVault.addVersion(KEY);
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v2.id), t.invocation);
    expect(report.decision).toBe(`version ${v2.version} was created`);
  });

  it('KeyExpired for the current version: a version is created, and the decision says it expired', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(NOW - 60_000) });
    t.hubs.add(hubId('hub'), v1.id);
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyExpired', v1.id), t.invocation);
    expect(t.keyVault.created).toHaveLength(1);
    expect(report.decision).toBe(`version ${v1.version} expired`);
    expect(t.audit.records.find((r) => r.result === 'rotated')).toMatchObject({
      trigger: 'event',
      eventType: 'KeyExpired',
    });
  });

  it('KeyNearExpiry for the current version: the decision says it is near expiry', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(NOW + 10 * DAY) });
    t.hubs.add(hubId('hub'), v1.id);
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', v1.id), t.invocation);
    expect(t.keyVault.created).toHaveLength(1);
    expect(report.decision).toBe(`version ${v1.version} is near expiry`);
  });

  it('one Key Vault could not have raised now: ignored with the reason, audited and logged as event.not-due', async () => {
    const t = fakeRotator();
    const far = t.keyVault.addVersion(KEY, { expiresOn: new Date(NOW + 200 * DAY) });
    const event = keyVaultEvent('KeyNearExpiry', far.id);
    const report = await t.rotator.handleEvent(event, t.invocation);
    const [warning] = lines(t, 'event.not-due');
    expect(warning).toMatchObject({
      level: 'warn',
      fields: { eventId: event.id, key: LABEL, version: far.version, reason: expect.any(String) },
    });
    const why = warning!.fields.reason as string;
    expect(why.length).toBeGreaterThan(0);
    const message = `KeyNearExpiry for version ${far.version} ignored: ${why}`;
    expect(report).toMatchObject({ keyId: KEY_URL, trigger: 'event', status: 'ignored', message });
    expect(t.audit.records).toEqual([
      expect.objectContaining({
        keyId: KEY_URL,
        result: 'ignored',
        fromVersion: far.version,
        message,
        trigger: 'event',
        eventId: event.id,
        eventType: 'KeyNearExpiry',
      }),
    ]);
  });

  it('a new version hubs cannot use: logged, audited as drift and published, the hubs stay where they are', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    const weak = t.keyVault.addVersion(KEY, { keyOps: ['encrypt', 'decrypt'] });
    const event = keyVaultEvent('KeyNewVersionCreated', weak.id);
    await t.rotator.handleEvent(event, t.invocation);
    const [warning] = lines(t, 'version.unusable');
    expect(warning).toMatchObject({ level: 'warn', fields: { key: LABEL, version: weak.version } });
    const detail = warning!.fields.reason as string;
    expect(detail).toBe(
      `version ${weak.version} cannot protect a hub (its key_ops do not allow wrapKey; its key_ops do not allow unwrapKey); hubs stay on their current version until a usable one exists`,
    );
    expect(t.audit.records).toContainEqual(
      expect.objectContaining({
        keyId: KEY_URL,
        result: 'drift',
        toVersion: weak.version,
        message: `version-unusable: ${detail}`,
        trigger: 'event',
        eventId: event.id,
        eventType: 'KeyNewVersionCreated',
      }),
    );
    expect(t.outcomes.sent).toContainEqual(
      expect.objectContaining({ type: 'CmkRotator.VersionUnusable', subject: weak.id }),
    );
    expect(t.hubs.puts).toHaveLength(0);
  });
});

describe('an event for a revoked key', () => {
  it('is ignored, logged as event.revoked-key with the event, key and version', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(NOW + 10 * DAY) });
    t.hubs.add(hubId('hub'), v1.id);
    await t.revocations.record({ key: KEY, versions: [], revokedAt: new Date(NOW - DAY), correlationId: 'c' });
    const event = keyVaultEvent('KeyNearExpiry', v1.id);
    const report = await t.rotator.handleEvent(event, t.invocation);
    expect(report.status).toBe('ignored');
    expect(t.keyVault.created).toHaveLength(0);
    expect(t.log.lines.filter((l) => l.event === 'event.revoked-key')).toEqual([
      {
        level: 'warn',
        event: 'event.revoked-key',
        fields: { eventId: event.id, key: LABEL, version: v1.version },
      },
    ]);
  });
});

describe('a failed event', () => {
  it('is recorded with the key, the event and its version', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { keyOps: ['encrypt', 'decrypt'] });
    t.hubs.add(hubId('hub'), `${KEY_URL}/oldversion`);
    const event = keyVaultEvent('KeyNewVersionCreated', v1.id);
    const report = await t.rotator.handleEvent(event, t.invocation);
    expect(report).toMatchObject({ status: 'failed', errorCode: 'KEY_UNUSABLE' });
    expect(t.audit.records).toContainEqual(
      expect.objectContaining({
        result: 'failed',
        keyId: KEY_URL,
        eventId: event.id,
        eventType: 'KeyNewVersionCreated',
        fromVersion: v1.version,
      }),
    );
  });

  it('each failure of an allowed vault is recorded, however close together (only foreign refusals are thinned)', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { keyOps: ['encrypt', 'decrypt'] });
    t.hubs.add(hubId('hub'), `${KEY_URL}/oldversion`);
    for (let i = 0; i < 2; i++) {
      const report = await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v1.id), t.invocation);
      expect(report).toMatchObject({ status: 'failed', errorCode: 'KEY_UNUSABLE' });
    }
    expect(t.audit.records.filter((r) => r.result === 'failed')).toHaveLength(2);
  });

  it('a malformed event is recorded without a key', async () => {
    const t = fakeRotator();
    await t.rotator.handleEvent(
      { id: 'x', eventType: 'Microsoft.KeyVault.KeyNearExpiry', data: { Id: 'nope' } },
      t.invocation,
    );
    expect(t.audit.records).toHaveLength(1);
    expect(t.audit.records[0]!.keyId).toBe('');
    expect(t.audit.records[0]).not.toHaveProperty('eventType');
  });
});

describe('a foreign vault’s events', () => {
  it('are refused each time: the first audited, the next ones within 10 minutes only logged as event.refused', async () => {
    const t = fakeRotator();
    const first = await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', FOREIGN), t.invocation);
    expect(first).toMatchObject({ status: 'refused', errorCode: 'VAULT_NOT_ALLOWED' });
    expect(lines(t, 'event.refused')).toHaveLength(0);
    const event = keyVaultEvent('KeyNearExpiry', FOREIGN);
    const again = await t.rotator.handleEvent(event, t.invocation);
    expect(again).toMatchObject({
      keyId: 'https://evil.vault.azure.net/keys/hub-cmk',
      trigger: 'event',
      status: 'refused',
      errorCode: 'VAULT_NOT_ALLOWED',
      message: first.message,
    });
    expect(again.message).toMatch(/evil\.vault\.azure\.net/);
    expect(lines(t, 'event.refused')).toEqual([
      {
        level: 'warn',
        event: 'event.refused',
        fields: { eventId: event.id, key: 'evil.vault.azure.net/hub-cmk', errorCode: 'VAULT_NOT_ALLOWED' },
      },
    ]);
    expect(t.audit.records).toHaveLength(1);
  });

  it('are audited again once 10 minutes have passed since the last audit, not a moment before', async () => {
    const t = fakeRotator();
    const refuse = () => t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', FOREIGN), t.invocation);
    await refuse();
    t.clock.advance(10 * 60_000 - 1);
    await refuse();
    expect(t.audit.records).toHaveLength(1);
    t.clock.advance(1);
    await refuse();
    expect(t.audit.records).toHaveLength(2);
    t.clock.advance(60_000);
    await refuse();
    expect(t.audit.records).toHaveLength(2);
  });
});
