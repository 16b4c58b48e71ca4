// Key Vault events at their edges: every refusal names its field in words an operator can act on, bounds hold at
// their limits, and the epoch and text fields Key Vault sends in several shapes are read the same way.
import { describe, expect, it } from 'vitest';
import { parseEpoch, parseKeyVaultEvent } from '../../src/domain/events';

const VAULT = 'https://contoso.vault.azure.net';
const V1 = '0123456789abcdef0123456789abcdef';
const event = (extra: Record<string, unknown> = {}, data: unknown = { Id: `${VAULT}/keys/hub-cmk/${V1}` }) => ({
  id: 'e1',
  eventType: 'Microsoft.KeyVault.KeyNearExpiry',
  data,
  ...extra,
});
const problems = (input: unknown) => {
  try {
    parseKeyVaultEvent(input);
  } catch (error) {
    return (error as { problems?: unknown }).problems;
  }
  throw new Error('parsed');
};

describe('Key Vault event refusals', () => {
  it.each([
    ['not an object', 'x', [{ field: 'event', message: 'must be a JSON object' }]],
    [
      'no id or type',
      { data: {} },
      [
        { field: 'id', message: 'is required' },
        { field: 'eventType', message: 'is required' },
      ],
    ],
    ['a blank id', event({ id: '   ' }), [{ field: 'id', message: 'is required' }]],
    ['an id that is not text', event({ id: 5 }), [{ field: 'id', message: 'is required' }]],
    ['an id too long', event({ id: 'i'.repeat(257) }), [{ field: 'id', message: 'must be at most 256 characters' }]],
    [
      'a type too long',
      event({ eventType: `Microsoft.KeyVault.${'x'.repeat(238)}` }),
      [{ field: 'eventType', message: 'must be at most 256 characters' }],
    ],
    ['data that is not JSON', event({}, '{'), [{ field: 'data', message: 'is a string that is not JSON' }]],
    ['data that is not an object', event({}, '[1]'), [{ field: 'data', message: 'must be an object' }]],
    [
      'a key id too long',
      event({}, { Id: `${VAULT}/keys/${'k'.repeat(500)}` }),
      [{ field: 'data.Id', message: 'must be at most 512 characters' }],
    ],
    [
      'no version anywhere',
      event({}, { Id: `${VAULT}/keys/hub-cmk` }),
      [{ field: 'data.Version', message: 'is required when data.Id has no version' }],
    ],
    [
      'a version that is not one',
      event({}, { Id: `${VAULT}/keys/hub-cmk`, Version: 'not-a-version' }),
      [{ field: 'data.Version', message: 'is not a key version' }],
    ],
    [
      'an object name for another key',
      event({}, { Id: `${VAULT}/keys/hub-cmk/${V1}`, ObjectName: 'other' }),
      [{ field: 'data.ObjectName', message: 'does not match the key name in data.Id (hub-cmk)' }],
    ],
  ])('refuses %s, naming the field', (_, input, expected) => {
    expect(problems(input)).toEqual(expected);
  });

  it('takes ids and types at their limits', () => {
    const parsed = parseKeyVaultEvent(event({ id: 'i'.repeat(256) }));
    expect(parsed).toMatchObject({ id: 'i'.repeat(256), type: 'KeyNearExpiry' });
    const longType = `Microsoft.KeyVault.${'x'.repeat(237)}`;
    expect(parseKeyVaultEvent(event({ eventType: longType }))).toEqual({
      id: 'e1',
      type: longType,
      ignored: `event type ${longType} is not a key rotation trigger`,
    });
  });

  it('takes a key id at 512 characters, and trims text fields', () => {
    const name = 'k'.repeat(127);
    const id = `${VAULT}/keys/${name}/${V1}`;
    expect(
      parseKeyVaultEvent(event({ id: ' e2 ' }, { Id: ` ${id} `, ObjectName: ` ${name.toUpperCase()} ` })),
    ).toMatchObject({
      id: 'e2',
      keyId: id,
    });
  });
});

describe('epochs as Key Vault sends them', () => {
  it.each([
    [1780000000, '2026-05-28T20:26:40.000Z'],
    ['1780000000', '2026-05-28T20:26:40.000Z'],
    [' 1780000000 ', '2026-05-28T20:26:40.000Z'],
    ['1780000000.5', '2026-05-28T20:26:40.500Z'],
    ['-1', '1969-12-31T23:59:59.000Z'],
    ['2026-05-28T20:26:40Z', '2026-05-28T20:26:40.000Z'],
    ['2026-05-28', '2026-05-28T00:00:00.000Z'],
    ['1780000000.25', '2026-05-28T20:26:40.250Z'],
  ])('%j is %s', (value, iso) => {
    expect(parseEpoch(value)?.toISOString()).toBe(iso);
  });

  it.each([null, undefined, '', '   ', 'soon', '12abc', 'abc12', {}, Number.NaN])('%j is no date', (value) => {
    expect(parseEpoch(value)).toBeUndefined();
  });
});
