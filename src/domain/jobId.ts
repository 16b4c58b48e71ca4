// A rotation job's public id: readable, URL-safe, and enough to find the job (key and target version).
import { ValidationError } from './errors';
import { isKeyVersion, normalizeVaultUrl } from './keyId';
import type { KeyName } from './keyId';

const SEPARATOR = '~';
const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;

/** `demo.vault.azure.net~hub-cmk~c7254b6c...`: vault host, key name and target version. */
export function jobIdOf(key: KeyName, targetVersion: string): string {
  return [new URL(key.vaultUrl).host, key.name, targetVersion].join(SEPARATOR).toLowerCase();
}

export function parseJobId(id: string): { key: KeyName; targetVersion: string } {
  // Stryker disable next-line StringLiteral: a missing part fails the checks below whatever its default text.
  const [host = '', name = '', version = '', ...rest] = id.split(SEPARATOR);
  const vaultUrl = normalizeVaultUrl(`https://${host}`);
  if (rest.length || !vaultUrl || !KEY_NAME.test(name) || !isKeyVersion(version)) {
    throw new ValidationError([
      { field: 'id', message: 'is not a job id (<vault host>~<key name>~<version>, as rotate and sync answer it)' },
    ]);
  }
  return { key: { vaultUrl, name }, targetVersion: version };
}
