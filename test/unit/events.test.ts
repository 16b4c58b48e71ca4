import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors';
import { isIgnored, parseEpoch, parseKeyVaultEvent } from '../../src/domain/events';
import type { KeyVaultEvent } from '../../src/domain/events';

const VERSION = 'ee059b2bb5bc48398a53b168c6cdcb10';
const KEY_ID = `https://sample-kv.vault.azure.net/keys/cmk/${VERSION}`;

/** Key Vault's data object as documented ("Azure Key Vault as Event Grid source"), for a key. */
function keyVaultData(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Id: KEY_ID,
    VaultName: 'sample-kv',
    ObjectType: 'Key',
    ObjectName: 'cmk',
    Version: VERSION,
    NBF: 1559081980,
    EXP: 1559082102,
    ...overrides,
  };
}

function eventGridEvent(type: string, data: unknown): Record<string, unknown> {
  return {
    id: '00eccf70-95a7-4e7c-8299-2eb17ee9ad64',
    topic:
      '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/sample-rg/providers/Microsoft.KeyVault/vaults/sample-kv',
    subject: 'cmk',
    eventType: type,
    eventTime: '2019-07-25T01:08:33.1036736Z',
    data,
    dataVersion: '1',
    metadataVersion: '1',
  };
}

function cloudEvent(type: string, data: unknown): Record<string, unknown> {
  return {
    id: '00eccf70-95a7-4e7c-8299-2eb17ee9ad64',
    source:
      '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/sample-rg/providers/Microsoft.KeyVault/vaults/sample-kv',
    subject: 'cmk',
    type,
    time: '2019-07-25T01:08:33.1036736Z',
    data,
    specversion: '1.0',
  };
}

function parsedKeyEvent(input: unknown): KeyVaultEvent {
  const event = parseKeyVaultEvent(input);
  if (isIgnored(event)) throw new Error(`unexpectedly ignored: ${event.ignored}`);
  return event;
}

function validationError(input: unknown): ValidationError {
  try {
    parseKeyVaultEvent(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

const EXPECTED = {
  id: '00eccf70-95a7-4e7c-8299-2eb17ee9ad64',
  key: { vaultUrl: 'https://sample-kv.vault.azure.net', name: 'cmk' },
  version: VERSION,
  keyId: KEY_ID,
  notBefore: new Date(1559081980_000),
  expiresOn: new Date(1559082102_000),
  eventTime: new Date('2019-07-25T01:08:33.103Z'),
};

describe('parseKeyVaultEvent', () => {
  describe.each([
    ['EventGridEvent', eventGridEvent],
    ['CloudEvents 1.0', cloudEvent],
  ])('%s schema', (_schema, make) => {
    it.each(['KeyNearExpiry', 'KeyExpired', 'KeyNewVersionCreated'] as const)(
      'reads Microsoft.KeyVault.%s with Key Vault PascalCase data',
      (type) => {
        expect(parsedKeyEvent(make(`Microsoft.KeyVault.${type}`, keyVaultData()))).toEqual({ ...EXPECTED, type });
      },
    );

    it('reads camelCase data', () => {
      const data = {
        id: KEY_ID,
        vaultName: 'sample-kv',
        objectType: 'Key',
        objectName: 'cmk',
        version: VERSION,
        nbf: 1559081980,
        exp: 1559082102,
      };
      expect(parsedKeyEvent(make('Microsoft.KeyVault.KeyNearExpiry', data))).toEqual({
        ...EXPECTED,
        type: 'KeyNearExpiry',
      });
    });

    it('reads data delivered as a JSON string', () => {
      const event = make('Microsoft.KeyVault.KeyExpired', JSON.stringify(keyVaultData()));
      expect(parsedKeyEvent(event)).toEqual({ ...EXPECTED, type: 'KeyExpired' });
    });

    it('ignores other Key Vault event types without error', () => {
      for (const type of [
        'Microsoft.KeyVault.SecretNearExpiry',
        'Microsoft.KeyVault.CertificateNewVersionCreated',
        'Microsoft.KeyVault.VaultAccessPolicyChanged',
        'Microsoft.Storage.BlobCreated',
      ]) {
        const event = parseKeyVaultEvent(make(type, { whatever: true }));
        expect(isIgnored(event)).toBe(true);
        expect(event).toMatchObject({ id: EXPECTED.id, type });
      }
    });
  });

  it('accepts the documented sample payload shape: string NBF/EXP, padded Version, "ObjectName " key', () => {
    // Microsoft's sample literally has a trailing space in the "ObjectName " key and a leading one in the Version.
    const data = {
      Id: KEY_ID,
      VaultName: 'sample-kv',
      ObjectType: 'Key',
      'ObjectName ': 'cmk',
      Version: ` ${VERSION}`,
      NBF: '1559081980',
      EXP: '1559082102',
    };
    expect(parsedKeyEvent(eventGridEvent('Microsoft.KeyVault.KeyNearExpiry', data))).toEqual({
      ...EXPECTED,
      type: 'KeyNearExpiry',
    });
    // The padded key still takes part in the consistency check.
    const mismatch = validationError(
      eventGridEvent('Microsoft.KeyVault.KeyNearExpiry', { ...data, 'ObjectName ': 'other-key' }),
    );
    expect(mismatch.problems.map((p) => p.field)).toEqual(['data.ObjectName']);
  });

  it('reads NBF/EXP given as strings with stray spaces', () => {
    const event = parsedKeyEvent(
      eventGridEvent('Microsoft.KeyVault.KeyNearExpiry', keyVaultData({ NBF: ' 1559081980 ', EXP: '1559082102  ' })),
    );
    expect(event.notBefore).toEqual(EXPECTED.notBefore);
    expect(event.expiresOn).toEqual(EXPECTED.expiresOn);
  });

  it('leaves notBefore/expiresOn out when NBF/EXP are null, empty or absent', () => {
    const withNulls = parsedKeyEvent(
      eventGridEvent('Microsoft.KeyVault.KeyNewVersionCreated', keyVaultData({ NBF: null, EXP: '  ' })),
    );
    expect(withNulls).not.toHaveProperty('notBefore');
    expect(withNulls).not.toHaveProperty('expiresOn');

    const data = keyVaultData();
    delete data.NBF;
    delete data.EXP;
    const absent = parsedKeyEvent(cloudEvent('Microsoft.KeyVault.KeyNewVersionCreated', data));
    expect(absent).not.toHaveProperty('notBefore');
    expect(absent).not.toHaveProperty('expiresOn');
    expect(absent.keyId).toBe(KEY_ID);
  });

  it('combines a versionless Id with data.Version', () => {
    const event = parsedKeyEvent(
      eventGridEvent(
        'Microsoft.KeyVault.KeyNewVersionCreated',
        keyVaultData({ Id: 'https://Sample-KV.vault.azure.net/keys/cmk' }),
      ),
    );
    expect(event.version).toBe(VERSION);
    expect(event.keyId).toBe(KEY_ID);
    expect(event.key).toEqual(EXPECTED.key);
  });

  it('rejects a versionless Id without a Version, naming data.Version', () => {
    const data = keyVaultData({ Id: 'https://sample-kv.vault.azure.net/keys/cmk' });
    delete data.Version;
    const error = validationError(eventGridEvent('Microsoft.KeyVault.KeyNearExpiry', data));
    expect(error.problems.map((p) => p.field)).toEqual(['data.Version']);
  });

  it('rejects a Version that is not a key version instead of building a key URL from it', () => {
    const error = validationError(
      eventGridEvent(
        'Microsoft.KeyVault.KeyNearExpiry',
        keyVaultData({ Id: 'https://sample-kv.vault.azure.net/keys/cmk', Version: '../../secrets/x' }),
      ),
    );
    expect(error.problems.map((p) => p.field)).toEqual(['data.Version']);
  });

  it('rejects a Version that contradicts the Id, naming data.Version', () => {
    const error = validationError(
      cloudEvent('Microsoft.KeyVault.KeyNearExpiry', keyVaultData({ Version: '0123456789abcdef0123456789abcdef' })),
    );
    expect(error.problems).toEqual([{ field: 'data.Version', message: expect.stringContaining(VERSION) as string }]);
    expect(error.code).toBe('INVALID_INPUT');
    expect(error.transient).toBe(false);
  });

  it('rejects an ObjectName that contradicts the Id, but accepts a different casing', () => {
    const error = validationError(
      eventGridEvent('Microsoft.KeyVault.KeyNearExpiry', keyVaultData({ ObjectName: 'other-key' })),
    );
    expect(error.problems.map((p) => p.field)).toEqual(['data.ObjectName']);
    expect(
      parsedKeyEvent(eventGridEvent('Microsoft.KeyVault.KeyNearExpiry', keyVaultData({ ObjectName: 'CMK' }))).key.name,
    ).toBe('cmk');
  });

  it.each([null, 'text', 42, [keyVaultData()]])('rejects a non-object event (%j)', (input) => {
    expect(validationError(input).problems.map((p) => p.field)).toEqual(['event']);
  });

  it('names every missing envelope field at once', () => {
    const eventGrid = validationError({ data: keyVaultData() });
    expect(eventGrid.problems.map((p) => p.field)).toEqual(['id', 'eventType']);
    const cloud = validationError({ specversion: '1.0', id: '  ', data: keyVaultData() });
    expect(cloud.problems.map((p) => p.field)).toEqual(['id', 'type']);
  });

  it.each([
    ['missing', undefined],
    ['not a URL', 'not a url'],
    ['http', `http://sample-kv.vault.azure.net/keys/cmk/${VERSION}`],
    ['a secret', `https://sample-kv.vault.azure.net/secrets/cmk/${VERSION}`],
    ['carrying a query', `${KEY_ID}?api-version=7.4`],
    ['too long a path', `${KEY_ID}/extra`],
  ])('rejects a data.Id that is %s', (_what, id) => {
    const error = validationError(eventGridEvent('Microsoft.KeyVault.KeyNearExpiry', keyVaultData({ Id: id })));
    expect(error.problems.map((p) => p.field)).toEqual(['data.Id']);
    expect(error.message).toMatch(/^data\.Id: /);
  });

  it.each([
    ['missing', undefined],
    ['not JSON', '{"Id":'],
    ['an array', [keyVaultData()]],
  ])('rejects key event data that is %s', (_what, data) => {
    expect(validationError(cloudEvent('Microsoft.KeyVault.KeyExpired', data)).problems.map((p) => p.field)).toEqual([
      'data',
    ]);
  });
});

describe('parseEpoch', () => {
  it('reads epoch seconds as numbers and strings, and ISO dates', () => {
    expect(parseEpoch(1559081980)).toEqual(new Date(1559081980_000));
    expect(parseEpoch('\t1559081980 ')).toEqual(new Date(1559081980_000));
    expect(parseEpoch('1559081980.5')).toEqual(new Date(1559081980_500));
    expect(parseEpoch('2019-07-25T01:08:33Z')).toEqual(new Date('2019-07-25T01:08:33Z'));
  });

  it('gives undefined for null, blanks, garbage and out-of-range values', () => {
    for (const value of [null, undefined, '', '   ', 'soon', true, {}, Number.NaN, Infinity, 1e20, '1e400']) {
      expect(parseEpoch(value)).toBeUndefined();
    }
  });
});
