// Key Vault key identifiers: https://<vault-host>/keys/<name>[/<version>].
import { ValidationError } from './errors';

export interface KeyName {
  /** `https://<host>` in lower case, no trailing slash. */
  vaultUrl: string;
  name: string;
}

export interface KeyRef extends KeyName {
  version?: string;
}

const NAME = /^[0-9a-zA-Z-]{1,127}$/;
const VERSION = /^[0-9a-zA-Z]{1,64}$/;

export function isKeyVersion(value: string): boolean {
  return VERSION.test(value);
}

/** Normalises a vault URL (`https://Name.Vault.Azure.Net/` → `https://name.vault.azure.net`); undefined if it is not one. */
export function normalizeVaultUrl(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' || url.username || url.password || url.search || url.hash) return undefined;
  if (url.pathname !== '/' && url.pathname !== '') return undefined;
  return `https://${url.host.toLowerCase()}`;
}

/** Parses a key identifier, or returns why it is not one. */
export function tryParseKeyId(value: unknown): KeyRef | string {
  if (typeof value !== 'string' || value.trim() === '')
    return 'must be a key URL like https://<vault>.vault.azure.net/keys/<name>';
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'https:') return 'must use https';
  if (url.search || url.hash || url.username || url.password) return 'must not carry a query, fragment or credentials';
  const [collection, name, version, ...rest] = url.pathname.split('/').filter(Boolean);
  if (collection?.toLowerCase() !== 'keys' || !name || rest.length > 0) {
    return 'must have the form https://<vault>/keys/<name>[/<version>]';
  }
  if (!NAME.test(name)) return 'has an invalid key name (1-127 letters, digits, dashes)';
  if (version !== undefined && !VERSION.test(version)) return 'has an invalid key version';
  return { vaultUrl: `https://${url.host.toLowerCase()}`, name, ...(version ? { version } : {}) };
}

export function parseKeyId(value: unknown, field = 'keyId'): KeyRef {
  const parsed = tryParseKeyId(value);
  if (typeof parsed === 'string') throw new ValidationError([{ field, message: parsed }]);
  return parsed;
}

export function keyUrl(key: KeyName): string {
  return `${key.vaultUrl}/keys/${key.name}`;
}

export function versionedKeyUrl(key: KeyName, version: string): string {
  return `${keyUrl(key)}/${version}`;
}

/** Same vault host and key name, ignoring case and version: does `identifier` reference `key`? */
export function referencesKey(identifier: string, key: KeyName): boolean {
  const parsed = tryParseKeyId(identifier);
  return (
    typeof parsed !== 'string' &&
    parsed.vaultUrl === key.vaultUrl &&
    parsed.name.toLowerCase() === key.name.toLowerCase()
  );
}

/** Version part of a versioned identifier (undefined for a versionless one or a non-key URL). */
export function versionOf(identifier: string): string | undefined {
  const parsed = tryParseKeyId(identifier);
  return typeof parsed === 'string' ? undefined : parsed.version;
}

/** A stable label for one key, usable in logs and as a storage partition (`vault-host/name`, lower case). */
export function keyLabel(key: KeyName): string {
  return `${new URL(key.vaultUrl).host}/${key.name}`.toLowerCase();
}
