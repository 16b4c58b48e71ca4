// Hardening from the hostile review: bounded event fields, storage refusals that are permanent, a lost lease that
// stops a creation, and a new version hubs cannot use that is reported instead of silently ignored.
import { describe, expect, it } from 'vitest';
import { toRotatorError } from '../../src/adapters/azureErrors';
import { createRotator } from '../../src/application';
import { parseKeyVaultEvent } from '../../src/domain/events';
import { BusyError, ValidationError } from '../../src/domain/errors';
import { fakeRotator, VAULT } from '../fakes/rotator';

const KEY = { vaultUrl: VAULT, name: 'hub-cmk' };
const SUB = '/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Devices/IotHubs';

function event(type: string, id: string, overrides: Record<string, unknown> = {}) {
  const version = id.split('/').pop();
  return {
    id: 'evt-1',
    topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/contoso',
    subject: 'hub-cmk',
    eventType: `Microsoft.KeyVault.${type}`,
    eventTime: '2026-06-01T00:00:00Z',
    data: {
      Id: id,
      VaultName: 'contoso',
      ObjectType: 'Key',
      ObjectName: 'hub-cmk',
      Version: version,
      NBF: null,
      EXP: null,
    },
    dataVersion: '1',
    metadataVersion: '1',
    ...overrides,
  };
}

describe('event fields are bounded', () => {
  it('refuses an event id or key identifier longer than Key Vault ever sends, naming the field', () => {
    const id = `${VAULT}/keys/hub-cmk/0123456789abcdef0123456789abcdef`;
    const problems = (input: unknown) => {
      try {
        parseKeyVaultEvent(input);
        return [];
      } catch (error) {
        return error instanceof ValidationError ? error.problems.map((p) => p.field) : ['not a ValidationError'];
      }
    };
    expect(problems(event('KeyNewVersionCreated', id, { id: 'x'.repeat(257) }))).toEqual(['id']);
    expect(problems(event('KeyNewVersionCreated', `${VAULT}/keys/${'k'.repeat(600)}/v1`))).toEqual(['data.Id']);
    expect(problems(event('KeyNewVersionCreated', id, { id: 'x'.repeat(256) }))).toEqual([]);
  });
});

describe('storage refusals', () => {
  it('a failed table transaction (400: an entity too large, bad input) is permanent, not endless redelivery', () => {
    const refused = Object.assign(new Error('The property value exceeds the maximum allowed size (64KB).'), {
      name: 'TableTransactionError',
      statusCode: 400,
      code: 'PropertyValueTooLarge',
    });
    const error = toRotatorError(refused, 'the audit table');
    expect(error.transient).toBe(false);
    expect(error.code).toBe('UPSTREAM_REJECTED');
    const busy = Object.assign(new Error('Server busy'), { name: 'TableTransactionError', statusCode: 503 });
    expect(toRotatorError(busy, 'the audit table').transient).toBe(true);
  });
});

describe('the key lease', () => {
  it('creates no version when the lease is lost before the creation', async () => {
    const t = fakeRotator();
    t.keyVault.addVersion(KEY);
    // The lease the lock hands out reports it is no longer held (its renewal failed).
    const lost = createRotator({
      ...t.deps,
      lock: {
        runExclusive: (_key, work) =>
          work({
            assertHeld: () => {
              throw new BusyError('Key hub-cmk');
            },
          }),
      },
    });
    await expect(lost.rotate(KEY, { dryRun: false }, t.invocation)).rejects.toBeInstanceOf(BusyError);
    expect(t.keyVault.created).toEqual([]);
  });
});

describe('a new version hubs cannot use', () => {
  it('is reported (audit and VersionUnusable outcome) while the hubs stay on their working version', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY, { keyOps: ['encrypt', 'decrypt'] });
    t.hubs.add(`${SUB}/hub-1`, v1.id);

    await t.rotator.handleEvent(event('KeyNewVersionCreated', v2.id), t.invocation);
    await t.drain();

    expect(t.hubs.keyOf(`${SUB}/hub-1`)).toBe(v1.id);
    expect(t.hubs.puts).toEqual([]);
    expect(t.outcomes.sent.filter((o) => o.type === 'CmkRotator.VersionUnusable')).toEqual([
      expect.objectContaining({ subject: v2.id, data: expect.objectContaining({ version: v2.version }) }),
    ]);
    const record = t.audit.records.find((r) => r.message?.startsWith('version-unusable:'));
    expect(record).toMatchObject({ result: 'drift', toVersion: v2.version });
    expect(record?.message).toContain('wrapKey');
  });

  it('says nothing for a usable new version', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(`${SUB}/hub-1`, v1.id);
    await t.rotator.handleEvent(event('KeyNewVersionCreated', v2.id), t.invocation);
    await t.drain();
    expect(t.hubs.keyOf(`${SUB}/hub-1`)).toBe(v2.id);
    expect(t.outcomes.sent.some((o) => o.type === 'CmkRotator.VersionUnusable')).toBe(false);
  });
});
