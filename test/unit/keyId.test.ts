import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors';
import {
  isKeyVersion,
  keyLabel,
  keyUrl,
  normalizeVaultUrl,
  parseKeyId,
  referencesKey,
  tryParseKeyId,
  versionOf,
  versionedKeyUrl,
} from '../../src/domain/keyId';

const VERSION = '78deebed173b48e48f55abf87ed4cf71';
const KEY = { vaultUrl: 'https://contoso.vault.azure.net', name: 'iot-cmk' };

describe('normalizeVaultUrl', () => {
  it.each([
    ['https://contoso.vault.azure.net', 'https://contoso.vault.azure.net'],
    ['https://Contoso.Vault.Azure.NET/', 'https://contoso.vault.azure.net'],
    ['  https://contoso.vault.azure.net/  ', 'https://contoso.vault.azure.net'],
    ['https://contoso.vault.azure.net:443/', 'https://contoso.vault.azure.net'],
    ['https://127.0.0.1:8443', 'https://127.0.0.1:8443'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeVaultUrl(input)).toBe(expected);
  });

  it.each([
    'http://contoso.vault.azure.net',
    'contoso.vault.azure.net',
    'https://contoso.vault.azure.net/keys',
    'https://contoso.vault.azure.net/?x=1',
    'https://contoso.vault.azure.net/#frag',
    'https://user:pass@contoso.vault.azure.net',
    '',
  ])('rejects %j', (input) => {
    expect(normalizeVaultUrl(input)).toBeUndefined();
  });
});

describe('tryParseKeyId / parseKeyId', () => {
  it('parses a versioned identifier, lower-casing only the host', () => {
    expect(tryParseKeyId(`https://Contoso.Vault.Azure.Net/keys/IoT-Cmk/${VERSION}`)).toEqual({
      vaultUrl: 'https://contoso.vault.azure.net',
      name: 'IoT-Cmk',
      version: VERSION,
    });
  });

  it('parses a versionless identifier, with or without a trailing slash, and any casing of "keys"', () => {
    const expected = { vaultUrl: 'https://contoso.vault.azure.net', name: 'iot-cmk' };
    expect(tryParseKeyId('https://contoso.vault.azure.net/keys/iot-cmk')).toEqual(expected);
    expect(tryParseKeyId('https://contoso.vault.azure.net/keys/iot-cmk/')).toEqual(expected);
    expect(tryParseKeyId(' https://contoso.vault.azure.net/KEYS/iot-cmk ')).toEqual(expected);
    expect(tryParseKeyId('https://contoso.vault.azure.net/keys/iot-cmk')).not.toHaveProperty('version');
  });

  it('keeps a non-default port and drops the default one', () => {
    expect(tryParseKeyId(`https://127.0.0.1:8443/keys/k/${VERSION}`)).toMatchObject({
      vaultUrl: 'https://127.0.0.1:8443',
    });
    expect(tryParseKeyId(`https://contoso.vault.azure.net:443/keys/k/${VERSION}`)).toMatchObject({
      vaultUrl: 'https://contoso.vault.azure.net',
    });
  });

  it.each([
    ['not a string', 42, /key URL/],
    ['blank', '  ', /key URL/],
    ['not a URL', 'contoso/keys/k', /not a URL/],
    ['http', `http://contoso.vault.azure.net/keys/k/${VERSION}`, /https/],
    ['a query string', `https://contoso.vault.azure.net/keys/k/${VERSION}?api-version=7.4`, /query/],
    ['a fragment', `https://contoso.vault.azure.net/keys/k#x`, /fragment/],
    ['credentials', `https://u:p@contoso.vault.azure.net/keys/k`, /credentials/],
    ['a secret URL', `https://contoso.vault.azure.net/secrets/k/${VERSION}`, /form/],
    ['no key name', 'https://contoso.vault.azure.net/keys/', /form/],
    ['the vault root', 'https://contoso.vault.azure.net/', /form/],
    ['an extra segment', `https://contoso.vault.azure.net/keys/k/${VERSION}/x`, /form/],
    ['an invalid name', 'https://contoso.vault.azure.net/keys/bad_name', /key name/],
    ['an over-long name', `https://contoso.vault.azure.net/keys/${'a'.repeat(128)}`, /key name/],
    ['an invalid version', 'https://contoso.vault.azure.net/keys/k/not-a-version', /version/],
  ])('explains why %s is not a key identifier', (_what, value, reason) => {
    const result = tryParseKeyId(value);
    expect(typeof result).toBe('string');
    expect(result).toMatch(reason);
  });

  it('parseKeyId throws a ValidationError naming the field', () => {
    expect(parseKeyId(`${keyUrl(KEY)}/${VERSION}`)).toEqual({ ...KEY, version: VERSION });
    try {
      parseKeyId('http://contoso.vault.azure.net/keys/k', 'body.keyId');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).problems).toEqual([{ field: 'body.keyId', message: 'must use https' }]);
    }
  });
});

describe('referencesKey', () => {
  it('matches the same vault and key whatever the casing and version', () => {
    expect(referencesKey(`https://contoso.vault.azure.net/keys/iot-cmk/${VERSION}`, KEY)).toBe(true);
    expect(referencesKey('https://CONTOSO.vault.azure.net/keys/IOT-CMK', KEY)).toBe(true);
    expect(referencesKey('https://contoso.vault.azure.net/keys/iot-cmk/0123456789abcdef0123456789abcdef', KEY)).toBe(
      true,
    );
  });

  it('does not match another vault, another key, or something that is not a key identifier', () => {
    expect(referencesKey(`https://fabrikam.vault.azure.net/keys/iot-cmk/${VERSION}`, KEY)).toBe(false);
    expect(referencesKey(`https://contoso.vault.azure.net/keys/iot-cmk-2/${VERSION}`, KEY)).toBe(false);
    expect(referencesKey(`https://contoso.vault.azure.net/keys/iot/${VERSION}`, KEY)).toBe(false);
    expect(referencesKey(`https://contoso.vault.azure.net:8443/keys/iot-cmk`, KEY)).toBe(false);
    expect(referencesKey(`https://contoso.vault.azure.net/secrets/iot-cmk/${VERSION}`, KEY)).toBe(false);
    expect(referencesKey('', KEY)).toBe(false);
  });
});

describe('helpers', () => {
  it('builds key URLs, labels and extracts versions', () => {
    expect(keyUrl(KEY)).toBe('https://contoso.vault.azure.net/keys/iot-cmk');
    expect(versionedKeyUrl(KEY, VERSION)).toBe(`https://contoso.vault.azure.net/keys/iot-cmk/${VERSION}`);
    expect(keyLabel({ vaultUrl: 'https://contoso.vault.azure.net', name: 'IoT-Cmk' })).toBe(
      'contoso.vault.azure.net/iot-cmk',
    );
    expect(versionOf(versionedKeyUrl(KEY, VERSION))).toBe(VERSION);
    expect(versionOf(keyUrl(KEY))).toBeUndefined();
    expect(versionOf('https://example.com/other')).toBeUndefined();
  });

  it('recognises key versions', () => {
    expect(isKeyVersion(VERSION)).toBe(true);
    expect(isKeyVersion('')).toBe(false);
    expect(isKeyVersion('a/b')).toBe(false);
    expect(isKeyVersion('..')).toBe(false);
  });
});
