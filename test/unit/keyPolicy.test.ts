import { describe, expect, it } from 'vitest';
import {
  ROTATED_FROM_TAG,
  addIsoDuration,
  compareVersions,
  isLive,
  newVersionSpec,
  newestFirst,
  unusableReasons,
} from '../../src/domain/keyPolicy';
import type { KeyVersionDetails, KeyVersionSummary } from '../../src/domain/ports';

const NOW = new Date('2025-06-15T12:00:00Z');
const DAY = 86_400_000;

function summary(version: string, createdOn: string, overrides: Partial<KeyVersionSummary> = {}): KeyVersionSummary {
  return {
    vaultUrl: 'https://contoso.vault.azure.net',
    name: 'iot-cmk',
    id: `https://contoso.vault.azure.net/keys/iot-cmk/${version}`,
    version,
    enabled: true,
    createdOn: new Date(createdOn),
    ...overrides,
  };
}

/** A key whose size Key Vault does not report (EC keys, or a reply without it). */
function withoutSize({ keySize: _, ...rest }: KeyVersionDetails): KeyVersionDetails {
  return rest;
}

function details(overrides: Partial<KeyVersionDetails> = {}): KeyVersionDetails {
  return {
    ...summary('aaaa1111', '2025-01-01T00:00:00Z'),
    keyType: 'RSA',
    keySize: 3072,
    keyOps: ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'],
    tags: {},
    ...overrides,
  };
}

describe('isLive', () => {
  it('is true for an enabled version inside its validity window', () => {
    expect(isLive(summary('a', '2025-01-01T00:00:00Z'), NOW)).toBe(true);
    const bounded = summary('a', '2025-01-01T00:00:00Z', {
      notBefore: NOW,
      expiresOn: new Date(NOW.getTime() + 1),
    });
    expect(isLive(bounded, NOW)).toBe(true);
  });

  it('is false when disabled, expired (at the instant of expiry) or not yet valid', () => {
    expect(isLive(summary('a', '2025-01-01T00:00:00Z', { enabled: false }), NOW)).toBe(false);
    expect(isLive(summary('a', '2025-01-01T00:00:00Z', { expiresOn: NOW }), NOW)).toBe(false);
    expect(isLive(summary('a', '2025-01-01T00:00:00Z', { notBefore: new Date(NOW.getTime() + 1) }), NOW)).toBe(false);
  });
});

describe('unusableReasons', () => {
  it('is empty for an enabled, valid RSA 2048+ key that may wrap and unwrap', () => {
    expect(unusableReasons(details(), NOW)).toEqual([]);
    expect(
      unusableReasons(details({ keyType: 'RSA-HSM', keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] }), NOW),
    ).toEqual([]);
  });

  it('gives one reason per broken rule', () => {
    expect(unusableReasons(details({ enabled: false }), NOW)).toEqual(['it is disabled']);
    expect(unusableReasons(details({ expiresOn: new Date(NOW.getTime() - DAY) }), NOW)).toEqual([
      'it expired at 2025-06-14T12:00:00.000Z',
    ]);
    expect(unusableReasons(details({ notBefore: new Date(NOW.getTime() + DAY) }), NOW)).toEqual([
      'it is not valid before 2025-06-16T12:00:00.000Z',
    ]);
    expect(unusableReasons(details({ keyOps: ['encrypt', 'decrypt', 'unwrapKey'] }), NOW)).toEqual([
      'its key_ops do not allow wrapKey',
    ]);
    expect(unusableReasons(details({ keyOps: ['wrapKey'] }), NOW)).toEqual(['its key_ops do not allow unwrapKey']);
    expect(unusableReasons(withoutSize(details({ keyType: 'EC' })), NOW)).toEqual(['its key type EC is not RSA']);
    expect(unusableReasons(details({ keyType: 'RSA', keySize: 1024 }), NOW)).toEqual([
      'its RSA size 1024 is below 2048 bits',
    ]);
    expect(unusableReasons(withoutSize(details()), NOW)).toEqual(['its RSA size unknown is below 2048 bits']);
  });

  it('lists every reason at once', () => {
    const broken = details({
      enabled: false,
      expiresOn: new Date(NOW.getTime() - DAY),
      keyOps: [],
      keyType: 'EC-HSM',
    });
    expect(unusableReasons(broken, NOW)).toHaveLength(5);
  });
});

describe('newestFirst / compareVersions', () => {
  const versions = [
    summary('b0000000', '2025-02-01T00:00:00Z'),
    summary('c0000000', '2025-03-01T00:00:00Z'),
    summary('a0000000', '2025-01-01T00:00:00Z'),
    summary('a1111111', '2025-03-01T00:00:00Z'),
  ];

  it('orders by creation time, newest first, breaking ties by version, without mutating the input', () => {
    const before = [...versions];
    expect(newestFirst(versions).map((v) => v.version)).toEqual(['c0000000', 'a1111111', 'b0000000', 'a0000000']);
    expect(versions).toEqual(before);
  });

  it('compares two versions by age, case-insensitively', () => {
    expect(compareVersions(versions, 'c0000000', 'b0000000')).toBe(1);
    expect(compareVersions(versions, 'A0000000', 'b0000000')).toBe(-1);
    expect(compareVersions(versions, 'b0000000', 'B0000000')).toBe(0);
  });

  it('is undefined when either version is unknown', () => {
    expect(compareVersions(versions, 'c0000000', 'ffffffff')).toBeUndefined();
    expect(compareVersions(versions, 'ffffffff', 'c0000000')).toBeUndefined();
  });
});

describe('addIsoDuration', () => {
  const iso = (start: string, duration: string) => addIsoDuration(new Date(start), duration)?.toISOString();

  it.each([
    ['2025-01-01T00:00:00.000Z', 'P90D', '2025-04-01T00:00:00.000Z'],
    ['2025-01-01T00:00:00.000Z', 'p90d', '2025-04-01T00:00:00.000Z'],
    ['2025-03-15T08:30:00.000Z', 'P1Y', '2026-03-15T08:30:00.000Z'],
    ['2025-01-31T10:00:00.000Z', 'P1M', '2025-02-28T10:00:00.000Z'],
    ['2024-01-31T10:00:00.000Z', 'P1M', '2024-02-29T10:00:00.000Z'],
    ['2024-02-29T00:00:00.000Z', 'P1Y', '2025-02-28T00:00:00.000Z'],
    ['2025-11-30T00:00:00.000Z', 'P3M', '2026-02-28T00:00:00.000Z'],
    ['2025-01-01T00:00:00.000Z', 'PT12H', '2025-01-01T12:00:00.000Z'],
    ['2025-01-01T00:00:00.000Z', 'P2W', '2025-01-15T00:00:00.000Z'],
    ['2025-01-01T00:00:00.000Z', 'P1Y2M3DT4H5M6S', '2026-03-04T04:05:06.000Z'],
    ['2025-01-01T00:00:00.000Z', ' P1DT1M ', '2025-01-02T00:01:00.000Z'],
  ])('%s + %s = %s', (start, duration, expected) => {
    expect(iso(start, duration)).toBe(expected);
  });

  it.each(['', 'P', 'PT', 'P1DT', '90D', 'P90', 'P-1D', '-P1D', 'P1.5D', 'PT1.5H', 'P0D', 'PT0S', 'P1H', 'every day'])(
    'rejects %j',
    (duration) => {
      expect(addIsoDuration(NOW, duration)).toBeUndefined();
    },
  );
});

describe('newVersionSpec', () => {
  it('keeps an RSA-HSM key in the HSM, at least as large, with wrap/unwrap, expiring per the rotation policy', () => {
    const current = details({
      keyType: 'RSA-HSM',
      keySize: 4096,
      keyOps: ['encrypt', 'decrypt'],
      tags: { owner: 'iot-team', [ROTATED_FROM_TAG]: 'older' },
    });
    expect(newVersionSpec(current, 'P1Y', 30, NOW)).toEqual({
      keyType: 'RSA-HSM',
      keySize: 4096,
      keyOps: ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'],
      expiresOn: new Date('2026-06-15T12:00:00Z'),
      tags: { owner: 'iot-team', [ROTATED_FROM_TAG]: 'aaaa1111' },
    });
  });

  it('never goes below 2048 bits and never below the old size', () => {
    expect(newVersionSpec(details({ keySize: 1024 }), undefined, 90, NOW).keySize).toBe(2048);
    expect(newVersionSpec(withoutSize(details()), undefined, 90, NOW).keySize).toBe(2048);
    expect(newVersionSpec(details({ keySize: 3072 }), undefined, 90, NOW).keySize).toBe(3072);
  });

  it('turns a non-RSA key into a software RSA key', () => {
    expect(newVersionSpec(withoutSize(details({ keyType: 'EC' })), undefined, 90, NOW)).toMatchObject({
      keyType: 'RSA',
      keySize: 2048,
    });
  });

  it('does not duplicate key operations that are already allowed', () => {
    expect(newVersionSpec(details({ keyOps: ['unwrapKey', 'wrapKey'] }), undefined, 90, NOW).keyOps).toEqual([
      'unwrapKey',
      'wrapKey',
    ]);
  });

  it('falls back to the default validity when the policy sets no usable expiry', () => {
    const expected = new Date(NOW.getTime() + 45 * DAY);
    expect(newVersionSpec(details(), undefined, 45, NOW).expiresOn).toEqual(expected);
    expect(newVersionSpec(details(), '', 45, NOW).expiresOn).toEqual(expected);
    expect(newVersionSpec(details(), 'ninety days', 45, NOW).expiresOn).toEqual(expected);
  });

  it('does not mutate the current version', () => {
    const current = details({ keyOps: ['encrypt'], tags: { owner: 'x' } });
    const copy = structuredClone(current);
    newVersionSpec(current, 'P90D', 90, NOW);
    expect(current).toEqual(copy);
  });
});
