// The domain's rules at their edges: error codes, retry classes and texts operators read; version order and
// validity at the boundaries; ISO 8601 durations; what a hub's body is read and written as; the pure step rules.
import { describe, expect, it } from 'vitest';
import { InProcessLock, mapWithConcurrency } from '../../src/domain/concurrency';
import { hubsBehind, missedRotation } from '../../src/domain/drift';
import {
  BusyError,
  EtagConflictError,
  HubKeyNotAppliedError,
  JobNotFoundError,
  KeyNotFoundError,
  KeyUnusableError,
  ThrottledError,
  UpstreamRejectedError,
  UpstreamUnavailableError,
  ValidationError,
  VaultNotAllowedError,
  errorCode,
  isTransient,
  safeMessage,
} from '../../src/domain/errors';
import {
  DelayGroups,
  PLANNED_VERSION,
  decideHub,
  isFinalResult,
  isSettled,
  resultOf,
  stepDisposition,
} from '../../src/domain/hubStep';
import type { HubResult } from '../../src/domain/hubStep';
import {
  hubBodyForWrite,
  keyIdentifiersOf,
  provisioningStateOf,
  resourceGroupOf,
  subscriptionOf,
  withKeyIdentifier,
} from '../../src/domain/hubs';
import { HUB_STANDINGS, hubStanding, keyHealth } from '../../src/domain/keyHealth';
import { normalizeVaultUrl, parseKeyId, referencesKey, tryParseKeyId, versionOf } from '../../src/domain/keyId';
import {
  REQUEST_TAG,
  ROTATED_FROM_TAG,
  addIsoDuration,
  eventIsDue,
  newVersionSpec,
  newestFirst,
  notifyWindowOpens,
  unusableReasons,
} from '../../src/domain/keyPolicy';
import type { HubTask, KeyVersionDetails, KeyVersionSummary } from '../../src/domain/ports';

const VAULT = 'https://contoso.vault.azure.net';
const KEY = { vaultUrl: VAULT, name: 'hub-cmk' };
const NOW = new Date('2026-06-01T00:00:00Z');
const DAY = 86_400_000;
const at = (ms: number) => new Date(NOW.getTime() + ms);
const V1 = '0123456789abcdef0123456789abcdef';
const V2 = 'fedcba9876543210fedcba9876543210';
const summary = (version: string, extra: Partial<KeyVersionSummary> = {}): KeyVersionSummary => ({
  ...KEY,
  version,
  id: `${VAULT}/keys/hub-cmk/${version}`,
  enabled: true,
  createdOn: at(-DAY),
  ...extra,
});
const details = (extra: Partial<KeyVersionDetails> = {}): KeyVersionDetails => ({
  ...summary(V1),
  keyType: 'RSA',
  keySize: 2048,
  keyOps: ['wrapKey', 'unwrapKey'],
  tags: {},
  ...extra,
});
const task = (extra: Partial<HubTask> = {}): HubTask => ({
  hubId: '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/IotHubs/h',
  hubName: 'h',
  state: 'pending',
  step: 1,
  attempts: 0,
  from: [],
  ...extra,
});

describe('errors: codes, retry class and the words operators read', () => {
  const cause = new Error('socket hang up');
  it.each([
    [new ValidationError([{ field: 'keyId', message: 'is required' }]), 'INVALID_INPUT', false, 'keyId: is required'],
    [new VaultNotAllowedError(VAULT), 'VAULT_NOT_ALLOWED', false, `Vault ${VAULT} is not in ROTATOR_ALLOWED_VAULTS.`],
    [new KeyNotFoundError('key k'), 'KEY_NOT_FOUND', false, 'key k was not found in Key Vault.'],
    [new JobNotFoundError('j'), 'JOB_NOT_FOUND', false, 'No job j was ever opened.'],
    [new KeyUnusableError('k/v', ['a', 'b']), 'KEY_UNUSABLE', false, 'Key version k/v cannot protect a hub: a; b.'],
    [new UpstreamRejectedError('ACCESS_DENIED', 'no', cause), 'ACCESS_DENIED', false, 'no'],
    [new UpstreamUnavailableError('later', cause), 'UPSTREAM_UNAVAILABLE', true, 'later'],
    [new ThrottledError('slow down', 5000, cause), 'THROTTLED', true, 'slow down'],
    [
      new EtagConflictError('h'),
      'ETAG_CONFLICT',
      true,
      'Hub h changed while it was being updated (412 Precondition Failed).',
    ],
    [
      new HubKeyNotAppliedError('h', 'v2', 'v1'),
      'HUB_KEY_NOT_APPLIED',
      false,
      'Hub h reported success but references v1 instead of v2.',
    ],
    [
      new HubKeyNotAppliedError('h', 'v2', undefined),
      'HUB_KEY_NOT_APPLIED',
      false,
      'Hub h reported success but references no key instead of v2.',
    ],
    [new BusyError('key k'), 'BUSY', true, 'key k is being processed by another invocation.'],
  ])('%s', (error, code, transient, message) => {
    expect(errorCode(error)).toBe(code);
    expect(isTransient(error)).toBe(transient);
    expect(error.message).toBe(message);
    expect(safeMessage(error)).toBe(message);
  });

  it('keeps the cause of Azure failures for the logs', () => {
    expect(new UpstreamRejectedError('UPSTREAM_REJECTED', 'x', cause).cause).toBe(cause);
    expect(new UpstreamUnavailableError('x', cause).cause).toBe(cause);
    expect(new ThrottledError('x', undefined, cause).cause).toBe(cause);
  });

  it('never repeats the text of an error it did not write, and treats unknown errors as transient', () => {
    const leak = new TypeError('AccountKey=secret');
    expect(safeMessage(leak)).toBe('TypeError: unexpected failure');
    expect(safeMessage('AccountKey=secret')).toBe('unexpected failure');
    expect(errorCode(leak)).toBe('INTERNAL');
    expect(isTransient(leak)).toBe(true);
  });
});

describe('key versions: validity at its edges, and order', () => {
  it('counts a version unusable from the second it expires, and until the second it becomes valid', () => {
    expect(unusableReasons(details({ expiresOn: NOW }), NOW)).toEqual([`it expired at ${NOW.toISOString()}`]);
    expect(unusableReasons(details({ expiresOn: at(1000) }), NOW)).toEqual([]);
    expect(unusableReasons(details({ notBefore: at(1000) }), NOW)).toEqual([
      `it is not valid before ${at(1000).toISOString()}`,
    ]);
    expect(unusableReasons(details({ notBefore: NOW }), NOW)).toEqual([]);
    expect(unusableReasons(details({ notBefore: at(-DAY) }), NOW)).toEqual([]);
  });

  it('orders versions made in the same second by the vault’s current one, before falling back to the name', () => {
    const second = at(-DAY);
    const [a, b] = [summary('aaaa', { createdOn: second }), summary('bbbb', { createdOn: second, latest: false })];
    expect(newestFirst([a, b]).map((v) => v.version)).toEqual(['bbbb', 'aaaa']);
    expect(newestFirst([{ ...a, latest: true }, b]).map((v) => v.version)).toEqual(['aaaa', 'bbbb']);
    expect(newestFirst([b, { ...a, latest: true }]).map((v) => v.version)).toEqual(['aaaa', 'bbbb']);
  });

  it('tags a new version with the version it replaces and the request that made it, under these exact names', () => {
    expect(ROTATED_FROM_TAG).toBe('cmk-rotator-rotated-from');
    expect(REQUEST_TAG).toBe('cmk-rotator-request-id');
    const spec = newVersionSpec(details({ tags: { team: 'iot', [REQUEST_TAG]: 'old' } }), undefined, 90, NOW, 'r1');
    expect(spec.tags).toEqual({ team: 'iot', 'cmk-rotator-rotated-from': V1, 'cmk-rotator-request-id': 'r1' });
  });
});

describe('whether Key Vault could have raised an event now', () => {
  const expiring = (days: number) => ({ expiresOn: at(days * DAY) });

  it('never for a version without expiry', () => {
    expect(eventIsDue('KeyNearExpiry', {}, undefined, NOW)).toEqual({
      due: false,
      why: 'the version has no expiry, so Key Vault raises no expiry events for it',
    });
    expect(eventIsDue('KeyExpired', {}, undefined, NOW).due).toBe(false);
  });

  it('KeyExpired once the version has expired, with a day of slack for Key Vault’s schedule', () => {
    expect(eventIsDue('KeyExpired', expiring(-1), undefined, NOW)).toEqual({ due: true });
    expect(eventIsDue('KeyExpired', expiring(1), undefined, NOW)).toEqual({ due: true });
    expect(eventIsDue('KeyExpired', { expiresOn: at(DAY + 1) }, undefined, NOW)).toEqual({
      due: false,
      why: `the version expires ${at(DAY + 1).toISOString()}, not yet`,
    });
  });

  it('KeyNearExpiry once the notify window (the policy’s, else 30 days) opens, a day of slack included', () => {
    expect(eventIsDue('KeyNearExpiry', expiring(31), undefined, NOW)).toEqual({ due: true });
    expect(eventIsDue('KeyNearExpiry', { expiresOn: at(31 * DAY + 1) }, undefined, NOW)).toEqual({
      due: false,
      why: `the version expires ${at(31 * DAY + 1).toISOString()} and its notify window (P30D) opens ${at(DAY + 1).toISOString()}`,
    });
    expect(eventIsDue('KeyNearExpiry', expiring(40), 'P40D', NOW)).toEqual({ due: true });
    expect(eventIsDue('KeyNearExpiry', expiring(40), 'P7D', NOW).due).toBe(false);
  });

  it('opens the notify window 30 days before expiry when the policy’s duration cannot be read', () => {
    expect(notifyWindowOpens(at(40 * DAY), 'soon')).toEqual(at(10 * DAY));
    expect(notifyWindowOpens(at(40 * DAY), undefined)).toEqual(at(10 * DAY));
  });
});

describe('ISO 8601 durations (rotation policies)', () => {
  it.each([
    ['P90D', '2026-08-30T00:00:00.000Z'],
    ['P18M', '2027-12-01T00:00:00.000Z'],
    ['P10Y', '2036-06-01T00:00:00.000Z'],
    ['P12W', '2026-08-24T00:00:00.000Z'],
    ['p1y', '2027-06-01T00:00:00.000Z'],
    [' P1M ', '2026-07-01T00:00:00.000Z'],
    ['PT36H', '2026-06-02T12:00:00.000Z'],
    ['P1DT12H30M15S', '2026-06-02T12:30:15.000Z'],
    ['PT90M', '2026-06-01T01:30:00.000Z'],
    ['PT3600S', '2026-06-01T01:00:00.000Z'],
  ])('%s after 2026-06-01 is %s', (duration, expected) => {
    expect(addIsoDuration(NOW, duration)?.toISOString()).toBe(expected);
  });

  it.each(['P', 'PT', 'P1DT', 'P90Dx', 'xP90D', '90D', 'P-1D', 'P0D', ''])('refuses %j', (duration) => {
    expect(addIsoDuration(NOW, duration)).toBeUndefined();
  });
});

describe('drift', () => {
  it('finds a missed rotation when the newest live version expires within the horizon, the horizon itself included', () => {
    const at30 = summary(V1, { expiresOn: at(30 * DAY) });
    expect(missedRotation(KEY, [at30], NOW, 30)).toEqual({
      fromVersion: V1,
      finding: {
        keyId: `${VAULT}/keys/hub-cmk`,
        kind: 'key-near-expiry',
        detail: `version ${V1} expires ${at(30 * DAY).toISOString()} and nothing newer exists`,
      },
    });
    expect(missedRotation(KEY, [summary(V1, { expiresOn: at(30 * DAY + 1) })], NOW, 30)).toBeUndefined();
    expect(missedRotation(KEY, [summary(V1, { enabled: false })], NOW, 30)?.finding).toMatchObject({
      kind: 'no-usable-version',
      detail: 'no enabled, unexpired version exists',
    });
  });

  it('says why a hub is behind, or which way its version is unusable', () => {
    const hub = (id: string, version: string) => ({
      id,
      name: id,
      body: {
        properties: {
          encryption: { keyVaultProperties: [{ keyIdentifier: `${VAULT}/keys/hub-cmk/${version}` }] },
        },
      },
    });
    const target = summary(V2, { createdOn: at(-1000) });
    const versions = [
      target,
      summary(V1),
      summary('11111111111111111111111111111111', { enabled: false, createdOn: at(-2 * DAY) }),
      summary('22222222222222222222222222222222', { expiresOn: at(-1), createdOn: at(-3 * DAY) }),
    ];
    const findings = hubsBehind(
      KEY,
      [
        hub('behind', V1),
        hub('off', '11111111111111111111111111111111'),
        hub('old', '22222222222222222222222222222222'),
        hub('gone', '33333333333333333333333333333333'),
      ],
      versions,
      target,
      NOW,
    );
    expect(findings.map((f) => [f.hubId, f.kind, f.detail])).toEqual([
      ['behind', 'hub-behind', `the hub references version ${V1}; the latest usable is ${V2}`],
      [
        'off',
        'hub-on-unusable-version',
        'the hub references version 11111111111111111111111111111111, which is disabled',
      ],
      [
        'old',
        'hub-on-unusable-version',
        'the hub references version 22222222222222222222222222222222, which is expired or not yet valid',
      ],
      [
        'gone',
        'hub-on-unusable-version',
        'the hub references version 33333333333333333333333333333333, which is missing',
      ],
    ]);
  });
});

describe('a hub’s body', () => {
  const id = `${VAULT}/keys/hub-cmk/${V1}`;

  it('reads no identifiers or state from bodies without them', () => {
    expect(keyIdentifiersOf({})).toEqual([]);
    expect(keyIdentifiersOf({ properties: { encryption: 'x' } })).toEqual([]);
    expect(keyIdentifiersOf({ properties: { encryption: { keyVaultProperties: { keyIdentifier: id } } } })).toEqual([]);
    expect(
      keyIdentifiersOf({ properties: { encryption: { keyVaultProperties: [null, { keyIdentifier: 7 }] } } }),
    ).toEqual([]);
    expect(provisioningStateOf({})).toBeUndefined();
    expect(provisioningStateOf({ properties: { provisioningState: 3 } })).toBeUndefined();
    expect(provisioningStateOf({ properties: { provisioningState: 'Updating' } })).toBe('Updating');
  });

  it('re-points only the entries of this key', () => {
    const other = 'https://contoso.vault.azure.net/keys/other/0123456789abcdef0123456789abcdef';
    const body = {
      properties: {
        encryption: { keyVaultProperties: [{ keyIdentifier: id }, { keyIdentifier: other }, { keyIdentifier: 5 }] },
      },
    };
    const target = `${VAULT}/keys/hub-cmk/${V2}`;
    expect(withKeyIdentifier(body, KEY, target)).toEqual({
      properties: {
        encryption: { keyVaultProperties: [{ keyIdentifier: target }, { keyIdentifier: other }, { keyIdentifier: 5 }] },
      },
    });
  });

  it('names the subscription and resource group only from a resource id that has them', () => {
    const hubId = '/subscriptions/AAAA/resourceGroups/Rg-1/providers/Microsoft.Devices/IotHubs/h';
    expect(subscriptionOf(hubId)).toBe('aaaa');
    expect(subscriptionOf(`/tenants/t${hubId}`)).toBe('');
    expect(resourceGroupOf(hubId)).toBe('Rg-1');
    expect(resourceGroupOf('/subscriptions/AAAA')).toBe('');
  });

  it('writes back bodies whose identities or endpoints are null as they are', () => {
    const body = {
      identity: { type: 'None', userAssignedIdentities: null },
      properties: { eventHubEndpoints: { events: null, operations: { path: 'p', retentionTimeInDays: 1 } } },
    };
    expect(hubBodyForWrite(body)).toEqual({
      identity: { type: 'None', userAssignedIdentities: null },
      properties: { eventHubEndpoints: { events: null, operations: { retentionTimeInDays: 1 } } },
    });
  });
});

describe('key identifiers', () => {
  it('accepts a vault URL with surrounding spaces and a bare path, nothing deeper', () => {
    expect(normalizeVaultUrl(' https://Contoso.Vault.Azure.Net/ ')).toBe(VAULT);
    expect(normalizeVaultUrl('https://contoso.vault.azure.net')).toBe(VAULT);
    expect(normalizeVaultUrl('https://contoso.vault.azure.net/keys')).toBeUndefined();
  });

  it('parses a key identifier with spaces around it, and names what is wrong otherwise', () => {
    expect(tryParseKeyId(` ${VAULT}/keys/hub-cmk/${V1} `)).toEqual({ ...KEY, version: V1 });
    expect(tryParseKeyId(`${VAULT}/keys/hub-cmk/not-a-version`)).toBe('has an invalid key version');
    expect(() => parseKeyId('nope')).toThrow(
      expect.objectContaining({ problems: [{ field: 'keyId', message: 'is not a URL' }] }),
    );
  });

  it('matches a reference to the same key only, and reads no version from a non-key URL', () => {
    expect(referencesKey(`${VAULT}/keys/HUB-CMK/${V1}`, KEY)).toBe(true);
    expect(referencesKey(`https://other.vault.azure.net/keys/hub-cmk/${V1}`, KEY)).toBe(false);
    expect(referencesKey('not a url', KEY)).toBe(false);
    expect(versionOf('not a url')).toBeUndefined();
    expect(versionOf(`${VAULT}/keys/hub-cmk`)).toBeUndefined();
    expect(versionOf(`${VAULT}/keys/hub-cmk/${V1}`)).toBe(V1);
  });
});

describe('the pure step rules', () => {
  it('skips a hub that no longer references the key, or references it without a version, saying so', () => {
    expect(decideHub([], V2, [])).toEqual({ result: 'skipped', reason: 'the hub no longer references the key' });
    expect(decideHub([V1, undefined], V2, [])).toEqual({
      result: 'skipped',
      reason: 'the hub references the key without a version (it follows the latest itself)',
    });
  });

  it('counts ARM’s terminal states as settled, in any case, and every other as a running update', () => {
    for (const state of ['Succeeded', 'failed', 'CANCELED', undefined]) expect(isSettled(state)).toBe(true);
    for (const state of ['Updating', 'Activating', 'Transitioning']) expect(isSettled(state)).toBe(false);
  });

  it('says why a step message does nothing', () => {
    expect(stepDisposition(task({ state: 'moved', recorded: true }), 1, NOW)).toEqual({ kind: 'done', why: 'final' });
    expect(stepDisposition(task({ step: 3 }), 2, NOW)).toEqual({ kind: 'done', why: 'the task is at step 3' });
    expect(stepDisposition(task({ leaseUntil: at(1) }), 1, NOW)).toEqual({
      kind: 'done',
      why: 'another instance is on this step',
    });
  });

  it('shows a wait only while it lasts', () => {
    expect(resultOf(task({ notBefore: at(1), waiting: 'backoff' }), NOW)).toBe('retrying');
    expect(resultOf(task({ notBefore: NOW, waiting: 'backoff' }), NOW)).toBe('queued');
    expect(resultOf(task({ notBefore: at(1), waiting: 'throttled', state: 'updating' }), NOW)).toBe('throttled');
  });

  it('tells final results from open ones, and plans a rotation’s hubs to the version not made yet', () => {
    const final: HubResult[] = ['moved', 'already-current', 'skipped', 'failed'];
    const open: HubResult[] = ['queued', 'in-flight', 'throttled', 'retrying', 'planned'];
    expect(final.map(isFinalResult)).toEqual([true, true, true, true]);
    expect(open.map(isFinalResult)).toEqual([false, false, false, false, false]);
    expect(PLANNED_VERSION).toBe('(new version)');
  });

  it('sends the largest group of hubs due at the same second first', () => {
    const groups = new DelayGroups();
    groups.add(5000, { hubId: 'a', step: 1 });
    groups.add(1500, { hubId: 'b', step: 1 });
    groups.add(1200, { hubId: 'c', step: 1 });
    const messages = groups.messages({ key: KEY, targetVersion: V2, hubs: [] });
    expect(messages.map((m) => [m.delayMs, m.message.hubs.map((h) => h.hubId)])).toEqual([
      [2000, ['b', 'c']],
      [5000, ['a']],
    ]);
  });
});

describe('key health at its edges', () => {
  it('is current only when every reference of the hub is on the target', () => {
    const target = summary(V2);
    const versions = [target, summary(V1)];
    expect(hubStanding([target.id, summary(V1).id], target, versions, undefined, NOW)).toBe('behind');
  });

  it('turns amber the moment the notify window opens, and names the expiry', () => {
    const expiresOn = at(30 * DAY);
    const counts = Object.fromEntries(HUB_STANDINGS.map((s) => [s, 0])) as Record<
      (typeof HUB_STANDINGS)[number],
      number
    >;
    expect(HUB_STANDINGS).toEqual(['current', 'behind', 'unusable', 'failed']);
    expect(keyHealth({ hubs: counts, current: { expiresOn }, notifyBeforeExpiry: 'P30D', now: NOW })).toEqual({
      level: 'amber',
      reasons: [`the current version expires ${expiresOn.toISOString()}, inside its notify window`],
    });
  });
});

describe('concurrency', () => {
  it('runs at most `limit` at once, as many as it may, and keeps the input order', async () => {
    let running = 0;
    let peak = 0;
    const results = await mapWithConcurrency([30, 10, 20, 5, 15], 3, async (ms, i) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, ms));
      running--;
      return i;
    });
    expect(results).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(3);
  });

  it('serialises work per name, also for work queued while earlier work was finishing', async () => {
    const lock = new InProcessLock();
    const log: string[] = [];
    const job = (name: string, ms: number) => async () => {
      log.push(`${name}+`);
      await new Promise((resolve) => setTimeout(resolve, ms));
      log.push(`${name}-`);
    };
    const a = lock.run('k', job('a', 20));
    const b = lock.run('k', job('b', 40));
    await a;
    const c = lock.run('k', job('c', 5));
    await Promise.all([b, c]);
    expect(log).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
  });
});
