// The Key Vault emulator's state: vaults → keys → versions, rotation policies, deleted keys and the events emitted.
// Everything here is transport-free; http.ts maps it onto Key Vault's REST API and index.ts wires both together.
//
// The state file holds private keys in clear (PKCS#8 PEM). It is a local emulator's data folder, the same as
// Azurite's: never point `stateFile` at anything that leaves the machine.
import {
  constants,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  privateDecrypt,
  publicEncrypt,
  randomUUID,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { EmulatorClock } from '../clock';
import type { EventSink, KeyVaultEventGridEvent } from '../contracts';
import { addIsoDuration, durationMs, parseIsoDuration, subtractIsoDuration } from './duration';

const generateKeyPairAsync = promisify(generateKeyPair);

export const KEY_VAULT_DNS_SUFFIX = 'vault.azure.net';
/** What every soft-delete-enabled vault (the default since 2020) reports. */
export const RECOVERY_LEVEL = 'Recoverable+Purgeable';
export const RECOVERABLE_DAYS = 90;
/** Without a rotation policy, Key Vault sends KeyNearExpiry 30 days before `exp`. */
export const DEFAULT_NOTIFY_BEFORE_EXPIRY = 'P30D';
const MAX_EVENTS_KEPT = 10_000;

export type KeyType = 'RSA' | 'RSA-HSM' | 'EC' | 'EC-HSM';
export type CryptoOperation = 'encrypt' | 'decrypt' | 'wrapKey' | 'unwrapKey';
export type RsaAlgorithm = 'RSA-OAEP' | 'RSA-OAEP-256' | 'RSA1_5';
export const KEY_OPERATIONS = [
  'encrypt',
  'decrypt',
  'sign',
  'verify',
  'wrapKey',
  'unwrapKey',
  'import',
  'export',
] as const;
const RSA_ALGORITHMS: readonly string[] = ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5'];
const RSA_SIZES = [2048, 3072, 4096];
const CURVES: Record<string, string> = {
  'P-256': 'prime256v1',
  'P-384': 'secp384r1',
  'P-521': 'secp521r1',
  'P-256K': 'secp256k1',
};

/** An error Key Vault would answer with: HTTP status, `error.code`, optional `error.innererror.code`. */
export class KeyVaultError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly innerCode?: string,
  ) {
    super(message);
    this.name = 'KeyVaultError';
  }
}

export interface StoredKeyVersion {
  version: string;
  kty: KeyType;
  keySize?: number;
  crv?: string;
  keyOps: string[];
  enabled: boolean;
  /** Epoch seconds, as Key Vault keeps them. */
  nbf?: number;
  exp?: number;
  created: number;
  updated: number;
  exportable: boolean;
  tags?: Record<string, string>;
  privateKeyPem: string;
  nearExpiryNotified?: boolean;
  expiredNotified?: boolean;
}

export interface LifetimeAction {
  trigger: { timeAfterCreate?: string; timeBeforeExpiry?: string };
  action: { type: 'Rotate' | 'Notify' };
}

export interface StoredRotationPolicy {
  lifetimeActions: LifetimeAction[];
  expiryTime?: string;
  created: number;
  updated: number;
}

export interface StoredKey {
  name: string;
  versions: StoredKeyVersion[];
  policy?: StoredRotationPolicy;
  deleted?: { deletedDate: number; scheduledPurgeDate: number };
}

interface PersistedState {
  formatVersion: 1;
  vaults: Record<string, { keys: Record<string, StoredKey> }>;
  events: KeyVaultEventGridEvent[];
}

/** A create request's fields, undefined when the body leaves them out. */
export interface CreateKeyParams {
  kty: string;
  keySize?: number | undefined;
  crv?: string | undefined;
  keyOps?: string[] | undefined;
  enabled?: boolean | undefined;
  nbf?: number | null | undefined;
  exp?: number | null | undefined;
  exportable?: boolean | undefined;
  tags?: Record<string, string> | undefined;
}

/** An update request's fields, undefined when the body leaves them out. */
export interface UpdateKeyParams {
  keyOps?: string[] | undefined;
  enabled?: boolean | undefined;
  nbf?: number | null | undefined;
  exp?: number | null | undefined;
  tags?: Record<string, string> | undefined;
}

export interface KeyVaultStoreOptions {
  clock: EmulatorClock;
  events?: EventSink;
  stateFile?: string;
  /** Vault names served; undefined serves any name. */
  vaults?: string[];
  subscriptionId: string;
  resourceGroup: string;
  /** Key Vault documents KeyNearExpiry / KeyExpired for the *current* version of a key; 'all' watches every version. */
  expiryEventsFor: 'current' | 'all';
  /**
   * Key Vault lets decrypt/unwrap use a version outside its nbf/exp window (only encrypt/wrap are refused), so data
   * wrapped while a key was valid stays readable. Set to refuse unwrap too (stricter than Azure).
   */
  enforceValidityOnUnwrap: boolean;
}

const keyOf = (name: string): string => name.toLowerCase();
const epoch = (d: Date): number => Math.floor(d.getTime() / 1000);

export function vaultUrl(vault: string): string {
  return `https://${vault}.${KEY_VAULT_DNS_SUFFIX}`;
}

/** The vault name from a host name such as `demo.vault.azure.net[:443]`, or undefined for other hosts. */
export function vaultNameFromHost(host: string | undefined): string | undefined {
  const h = (host ?? '').toLowerCase().replace(/:\d+$/, '');
  const suffix = `.${KEY_VAULT_DNS_SUFFIX}`;
  if (!h.endsWith(suffix)) return undefined;
  const name = h.slice(0, -suffix.length);
  return /^[a-z0-9-]{3,24}$/.test(name) ? name : undefined;
}

export function keyNotFound(name: string, version?: string): KeyVaultError {
  return new KeyVaultError(
    404,
    'KeyNotFound',
    `A key with (name/id) ${version ? `${name}/${version}` : name} was not found in this key vault. If you recently ` +
      'deleted this key you may be able to recover it using the correct recovery command. For help resolving this ' +
      'issue, please see https://go.microsoft.com/fwlink/?linkid=2125182',
  );
}

const badParameter = (message: string): KeyVaultError => new KeyVaultError(400, 'BadParameter', message);

function checkKeyName(name: string): void {
  if (!/^[0-9a-zA-Z-]{1,127}$/.test(name)) {
    throw badParameter(`The request URI contains an invalid name: ${name}`);
  }
}

function checkKeyOps(ops: unknown): string[] {
  if (
    !Array.isArray(ops) ||
    ops.some((o) => typeof o !== 'string' || !(KEY_OPERATIONS as readonly string[]).includes(o))
  ) {
    throw badParameter(`Invalid key_ops. Allowed values: ${KEY_OPERATIONS.join(', ')}.`);
  }
  return [...new Set(ops as string[])];
}

function checkTags(tags: unknown): Record<string, string> | undefined {
  if (tags === undefined || tags === null) return undefined;
  if (typeof tags !== 'object' || Array.isArray(tags) || Object.values(tags).some((v) => typeof v !== 'string')) {
    throw badParameter('Tags must be an object of string values.');
  }
  if (Object.keys(tags).length > 15) throw badParameter('A key can have at most 15 tags.');
  return { ...(tags as Record<string, string>) };
}

function checkEpoch(value: unknown, what: string): number | null | undefined {
  if (value === undefined || value === null) return value;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw badParameter(`Attribute ${what} must be a number.`);
  return Math.floor(value);
}

/** Validates a rotation policy body as Key Vault does (the limits its documentation states). */
export function checkRotationPolicy(body: unknown): { lifetimeActions: LifetimeAction[]; expiryTime?: string } {
  const b = (body ?? {}) as { lifetimeActions?: unknown; attributes?: { expiryTime?: unknown } };
  const expiryTime = b.attributes?.expiryTime;
  if (expiryTime !== undefined && expiryTime !== null) {
    const d = typeof expiryTime === 'string' ? parseIsoDuration(expiryTime) : undefined;
    if (!d)
      throw badParameter(
        `Invalid expiryTime ${JSON.stringify(expiryTime)}: expected an ISO 8601 duration such as P90D.`,
      );
    if (durationMs(d) < 28 * 86_400_000)
      throw badParameter('The expiryTime of a rotation policy must be at least 28 days (P28D).');
  }
  const rawActions = b.lifetimeActions ?? [];
  if (!Array.isArray(rawActions)) throw badParameter('lifetimeActions must be an array.');
  const seen = new Set<string>();
  const lifetimeActions = rawActions.map((raw: unknown): LifetimeAction => {
    const a = raw as { trigger?: Record<string, unknown>; action?: { type?: unknown } };
    const typeText = typeof a.action?.type === 'string' ? a.action.type.toLowerCase() : '';
    const type = typeText === 'rotate' ? 'Rotate' : typeText === 'notify' ? 'Notify' : undefined;
    if (!type) throw badParameter(`Unknown lifetime action type '${String(a.action?.type)}': use Rotate or Notify.`);
    if (seen.has(type)) throw badParameter(`A rotation policy may hold only one ${type} action.`);
    seen.add(type);
    const after = a.trigger?.timeAfterCreate;
    const before = a.trigger?.timeBeforeExpiry;
    if ((after === undefined || after === null) === (before === undefined || before === null)) {
      throw badParameter('Each lifetime action trigger needs exactly one of timeAfterCreate and timeBeforeExpiry.');
    }
    if (type === 'Notify' && after !== undefined && after !== null) {
      throw badParameter('A Notify action is triggered by timeBeforeExpiry only.');
    }
    const text = after ?? before;
    const d = typeof text === 'string' ? parseIsoDuration(text) : undefined;
    if (typeof text !== 'string' || !d) {
      throw badParameter(`Invalid trigger duration ${JSON.stringify(text)}: expected an ISO 8601 duration.`);
    }
    if (durationMs(d) < 7 * 86_400_000) throw badParameter('Lifetime action triggers must be at least 7 days (P7D).');
    return {
      trigger: after !== undefined && after !== null ? { timeAfterCreate: text } : { timeBeforeExpiry: text },
      action: { type },
    };
  });
  return { lifetimeActions, ...(typeof expiryTime === 'string' ? { expiryTime } : {}) };
}

/** Removes PKCS#1 v1.5 encryption padding (0x00 0x02 PS 0x00 M) from a raw RSA block. */
function unpadPkcs1v15(block: Buffer): Buffer {
  if (block.length < 11 || block[0] !== 0x00 || block[1] !== 0x02) throw badParameter('Decryption failed.');
  const sep = block.indexOf(0x00, 2);
  if (sep < 10) throw badParameter('Decryption failed.');
  return block.subarray(sep + 1);
}

export class KeyVaultStore {
  private state: PersistedState = { formatVersion: 1, vaults: {}, events: [] };
  private readonly keyObjects = new Map<string, KeyObject>();
  private readonly allowedVaults: Set<string> | undefined;
  private checking: Promise<void> | undefined;

  constructor(private readonly options: KeyVaultStoreOptions) {
    this.allowedVaults = options.vaults ? new Set(options.vaults.map((v) => v.toLowerCase())) : undefined;
    if (options.stateFile && existsSync(options.stateFile)) {
      let loaded: PersistedState;
      try {
        loaded = JSON.parse(readFileSync(options.stateFile, 'utf8')) as PersistedState;
      } catch (error) {
        throw new Error(`Key Vault emulator state ${options.stateFile} is not readable JSON: ${String(error)}`);
      }
      if (loaded.formatVersion !== 1)
        throw new Error(`Key Vault emulator state ${options.stateFile} has an unknown format.`);
      this.state = { formatVersion: 1, vaults: loaded.vaults ?? {}, events: loaded.events ?? [] };
    }
  }

  get clock(): EmulatorClock {
    return this.options.clock;
  }

  private now(): number {
    return epoch(this.options.clock.now());
  }

  // ---- persistence ----------------------------------------------------------------------------------------------

  private save(): void {
    const file = this.options.stateFile;
    if (!file) return;
    mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.state), { mode: 0o600 });
    renameSync(tmp, file);
  }

  // ---- lookup ---------------------------------------------------------------------------------------------------

  hasVault(vault: string): boolean {
    return !this.allowedVaults || this.allowedVaults.has(vault.toLowerCase());
  }

  private vault(vault: string): { keys: Record<string, StoredKey> } {
    const v = vault.toLowerCase();
    if (!this.hasVault(v))
      throw new KeyVaultError(404, 'VaultNotFound', `No vault named ${vault} is served by this emulator.`);
    return (this.state.vaults[v] ??= { keys: {} });
  }

  /** The live (not deleted) key, or KeyNotFound. */
  key(vault: string, name: string): StoredKey {
    const key = this.vault(vault).keys[keyOf(name)];
    if (!key || key.deleted || key.versions.length === 0) throw keyNotFound(name);
    return key;
  }

  /** A version of a live key; an empty or missing version means the latest. */
  keyVersion(vault: string, name: string, version?: string): { key: StoredKey; version: StoredKeyVersion } {
    const key = this.key(vault, name);
    if (!version) return { key, version: key.versions[key.versions.length - 1]! };
    const found = key.versions.find((v) => v.version === version.toLowerCase());
    if (!found) throw keyNotFound(name, version);
    return { key, version: found };
  }

  keyId(vault: string, key: StoredKey, version?: StoredKeyVersion): string {
    return `${vaultUrl(vault.toLowerCase())}/keys/${key.name}${version ? `/${version.version}` : ''}`;
  }

  listKeys(vault: string): StoredKey[] {
    return Object.values(this.vault(vault).keys).filter((k) => !k.deleted && k.versions.length > 0);
  }

  listDeletedKeys(vault: string): StoredKey[] {
    return Object.values(this.vault(vault).keys).filter((k) => k.deleted);
  }

  deletedKey(vault: string, name: string): StoredKey {
    const key = this.vault(vault).keys[keyOf(name)];
    if (!key?.deleted) throw keyNotFound(name);
    return key;
  }

  /** Public JWK members (n/e or crv/x/y) of a version: never the private parts. */
  publicJwk(version: StoredKeyVersion): Record<string, string> {
    const jwk = createPublicKey(this.privateKey(version)).export({ format: 'jwk' });
    if (jwk.kty === 'RSA') return { n: jwk.n!, e: jwk.e! };
    return { crv: version.crv ?? String(jwk.crv), x: jwk.x!, y: jwk.y! };
  }

  private privateKey(version: StoredKeyVersion): KeyObject {
    let k = this.keyObjects.get(version.version);
    if (!k) {
      k = createPrivateKey(version.privateKeyPem);
      this.keyObjects.set(version.version, k);
    }
    return k;
  }

  // ---- keys -----------------------------------------------------------------------------------------------------

  /** POST /keys/{name}/create: a new key, or a new version of an existing one. */
  async createKey(
    vault: string,
    name: string,
    params: CreateKeyParams,
  ): Promise<{ key: StoredKey; version: StoredKeyVersion }> {
    checkKeyName(name);
    const v = this.vault(vault);
    const existing = v.keys[keyOf(name)];
    if (existing?.deleted) {
      throw new KeyVaultError(
        409,
        'Conflict',
        `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, ` +
          'the key can only be recovered or purged.',
      );
    }
    const version = await this.newVersion(params);
    const key = v.keys[keyOf(name)] ?? { name, versions: [] };
    if (key.deleted) throw new KeyVaultError(409, 'Conflict', `Key ${name} was deleted while it was being created.`);
    key.versions.push(version);
    v.keys[keyOf(name)] = key;
    this.emit('Microsoft.KeyVault.KeyNewVersionCreated', vault, key, version);
    this.save();
    return { key, version };
  }

  private async newVersion(params: CreateKeyParams): Promise<StoredKeyVersion> {
    const kty = params.kty as KeyType;
    if (!['RSA', 'RSA-HSM', 'EC', 'EC-HSM'].includes(kty)) {
      throw badParameter(
        `The key type '${String(params.kty)}' is not supported by a vault. Use RSA, RSA-HSM, EC or EC-HSM.`,
      );
    }
    const rsa = kty.startsWith('RSA');
    const keyOps = params.keyOps
      ? checkKeyOps(params.keyOps)
      : rsa
        ? ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey']
        : ['sign', 'verify'];
    let privateKeyPem: string;
    let keySize: number | undefined;
    let crv: string | undefined;
    if (rsa) {
      keySize = params.keySize ?? 2048;
      if (!RSA_SIZES.includes(keySize))
        throw badParameter(`Unsupported RSA key size ${keySize}: use 2048, 3072 or 4096.`);
      const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: keySize, publicExponent: 0x10001 });
      privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    } else {
      crv = params.crv ?? 'P-256';
      const namedCurve = CURVES[crv];
      if (!namedCurve) throw badParameter(`Unsupported curve ${crv}: use ${Object.keys(CURVES).join(', ')}.`);
      const { privateKey } = await generateKeyPairAsync('ec', { namedCurve });
      privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    }
    const now = this.now();
    const nbf = checkEpoch(params.nbf, 'nbf');
    const exp = checkEpoch(params.exp, 'exp');
    const tags = checkTags(params.tags);
    return {
      version: randomUUID().replace(/-/g, ''),
      kty,
      ...(keySize ? { keySize } : {}),
      ...(crv ? { crv } : {}),
      keyOps,
      enabled: params.enabled ?? true,
      ...(typeof nbf === 'number' ? { nbf } : {}),
      ...(typeof exp === 'number' ? { exp } : {}),
      created: now,
      updated: now,
      exportable: params.exportable ?? false,
      ...(tags ? { tags } : {}),
      privateKeyPem,
    };
  }

  /** PATCH /keys/{name}/{version}: enabled, nbf, exp, tags, key_ops of one version (latest when none is named). */
  updateKey(
    vault: string,
    name: string,
    versionId: string | undefined,
    patch: UpdateKeyParams,
  ): { key: StoredKey; version: StoredKeyVersion } {
    const { key, version } = this.keyVersion(vault, name, versionId);
    const keyOps = patch.keyOps !== undefined ? checkKeyOps(patch.keyOps) : undefined;
    const tags = patch.tags !== undefined ? checkTags(patch.tags) : undefined;
    const nbf = checkEpoch(patch.nbf, 'nbf');
    const exp = checkEpoch(patch.exp, 'exp');
    if (patch.enabled !== undefined) {
      if (typeof patch.enabled !== 'boolean') throw badParameter('Attribute enabled must be a boolean.');
      version.enabled = patch.enabled;
    }
    if (nbf === null) delete version.nbf;
    else if (nbf !== undefined) version.nbf = nbf;
    if (exp === null) delete version.exp;
    else if (exp !== undefined && exp !== version.exp) {
      version.exp = exp;
      // A new expiry is a new chance to be near expiry / expired.
      delete version.nearExpiryNotified;
      delete version.expiredNotified;
    }
    if (keyOps) version.keyOps = keyOps;
    if (patch.tags !== undefined) {
      if (tags) version.tags = tags;
      else delete version.tags;
    }
    version.updated = this.now();
    this.save();
    return { key, version };
  }

  /** POST /keys/{name}/rotate: a new version like the current one, expiring per the policy's expiryTime. */
  async rotateKey(vault: string, name: string): Promise<{ key: StoredKey; version: StoredKeyVersion }> {
    const key = this.key(vault, name);
    const current = key.versions[key.versions.length - 1]!;
    const version = await this.newVersion({
      kty: current.kty,
      keySize: current.keySize,
      crv: current.crv,
      keyOps: current.keyOps,
      tags: current.tags,
      exportable: current.exportable,
    });
    const expiry = key.policy?.expiryTime ? parseIsoDuration(key.policy.expiryTime) : undefined;
    if (expiry) version.exp = epoch(addIsoDuration(new Date(version.created * 1000), expiry));
    if (key.deleted) throw keyNotFound(name);
    key.versions.push(version);
    this.emit('Microsoft.KeyVault.KeyNewVersionCreated', vault, key, version);
    this.save();
    return { key, version };
  }

  /** The stored policy, or Key Vault's default (notify 30 days before expiry) when none was set. */
  rotationPolicy(vault: string, name: string): { key: StoredKey; policy: StoredRotationPolicy | undefined } {
    const key = this.key(vault, name);
    return { key, policy: key.policy };
  }

  setRotationPolicy(vault: string, name: string, body: unknown): { key: StoredKey; policy: StoredRotationPolicy } {
    const key = this.key(vault, name);
    const checked = checkRotationPolicy(body);
    const now = this.now();
    key.policy = { ...checked, created: key.policy?.created ?? now, updated: now };
    this.save();
    return { key, policy: key.policy };
  }

  deleteKey(vault: string, name: string): StoredKey {
    const key = this.key(vault, name);
    const now = this.now();
    key.deleted = { deletedDate: now, scheduledPurgeDate: now + RECOVERABLE_DAYS * 86_400 };
    this.save();
    return key;
  }

  purgeDeletedKey(vault: string, name: string): void {
    const key = this.deletedKey(vault, name);
    for (const v of key.versions) this.keyObjects.delete(v.version);
    delete this.vault(vault).keys[keyOf(name)];
    this.save();
  }

  recoverDeletedKey(vault: string, name: string): StoredKey {
    const key = this.deletedKey(vault, name);
    delete key.deleted;
    this.save();
    return key;
  }

  // ---- cryptography ---------------------------------------------------------------------------------------------

  /**
   * The checks Key Vault makes before `operation`: the version exists and is enabled, its key_ops allow the operation,
   * and (for encrypt and wrapKey) the clock is inside its nbf/exp window. Throws KeyVaultError when one fails.
   */
  checkUsable(
    vault: string,
    name: string,
    versionId: string | undefined,
    operation: CryptoOperation,
  ): { key: StoredKey; version: StoredKeyVersion } {
    const { key, version } = this.keyVersion(vault, name, versionId);
    if (!version.enabled) {
      throw new KeyVaultError(
        403,
        'Forbidden',
        `Operation ${operation} is not allowed on a disabled key.`,
        'KeyDisabled',
      );
    }
    if (!version.keyOps.includes(operation)) {
      throw new KeyVaultError(
        403,
        'Forbidden',
        `Operation ${operation} is not permitted on this key.`,
        'KeyOperationForbidden',
      );
    }
    const protective = operation === 'encrypt' || operation === 'wrapKey';
    if (protective || this.options.enforceValidityOnUnwrap) {
      const now = this.now();
      if (version.nbf !== undefined && now < version.nbf) {
        throw new KeyVaultError(
          403,
          'Forbidden',
          `Operation ${operation} is not allowed on a key that is not yet valid.`,
          'KeyNotYetValid',
        );
      }
      if (version.exp !== undefined && now >= version.exp) {
        throw new KeyVaultError(
          403,
          'Forbidden',
          `Operation ${operation} is not allowed on an expired key.`,
          'KeyExpired',
        );
      }
    }
    return { key, version };
  }

  /**
   * Runs encrypt/decrypt/wrapKey/unwrapKey with a version, after the checks Key Vault makes: the version is enabled,
   * its key_ops allow the operation, and (for encrypt and wrapKey) the clock is inside its nbf/exp window.
   */
  cryptoOperation(
    vault: string,
    name: string,
    versionId: string | undefined,
    operation: CryptoOperation,
    algorithm: string,
    value: Buffer,
  ): { kid: string; result: Buffer } {
    const { key, version } = this.checkUsable(vault, name, versionId, operation);
    const protective = operation === 'encrypt' || operation === 'wrapKey';
    if (!RSA_ALGORITHMS.includes(algorithm)) {
      throw badParameter(`Invalid algorithm '${algorithm}': a vault key supports RSA-OAEP, RSA-OAEP-256 and RSA1_5.`);
    }
    if (!version.kty.startsWith('RSA')) {
      throw badParameter(`Algorithm ${algorithm} cannot be used with a key of type ${version.kty}.`);
    }
    const result = this.rsa(version, protective, algorithm as RsaAlgorithm, value);
    return { kid: this.keyId(vault, key, version), result };
  }

  private rsa(version: StoredKeyVersion, encrypt: boolean, algorithm: RsaAlgorithm, value: Buffer): Buffer {
    const privateKey = this.privateKey(version);
    try {
      if (algorithm === 'RSA1_5') {
        if (encrypt)
          return publicEncrypt({ key: createPublicKey(privateKey), padding: constants.RSA_PKCS1_PADDING }, value);
        // Node refuses PKCS#1 v1.5 private decryption since the Marvin fix; the emulator unpads a raw block itself.
        return unpadPkcs1v15(privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, value));
      }
      const options = {
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: algorithm === 'RSA-OAEP' ? 'sha1' : 'sha256',
      };
      return encrypt
        ? publicEncrypt({ key: createPublicKey(privateKey), ...options }, value)
        : privateDecrypt({ key: privateKey, ...options }, value);
    } catch (error) {
      if (error instanceof KeyVaultError) throw error;
      throw badParameter(
        encrypt ? `The value cannot be processed with ${algorithm}: ${(error as Error).message}` : 'Decryption failed.',
      );
    }
  }

  // ---- events ---------------------------------------------------------------------------------------------------

  private topic(vault: string): string {
    return (
      `/subscriptions/${this.options.subscriptionId}/resourceGroups/${this.options.resourceGroup}` +
      `/providers/Microsoft.KeyVault/vaults/${vault.toLowerCase()}`
    );
  }

  private emit(eventType: string, vault: string, key: StoredKey, version: StoredKeyVersion): void {
    const event: KeyVaultEventGridEvent = {
      id: randomUUID(),
      topic: this.topic(vault),
      subject: key.name,
      eventType,
      eventTime: this.options.clock.now().toISOString(),
      data: {
        Id: this.keyId(vault, key, version),
        VaultName: vault.toLowerCase(),
        ObjectType: 'Key',
        ObjectName: key.name,
        Version: version.version,
        NBF: version.nbf ?? null,
        EXP: version.exp ?? null,
      },
      dataVersion: '1',
      metadataVersion: '1',
    };
    this.state.events.push(event);
    if (this.state.events.length > MAX_EVENTS_KEPT)
      this.state.events.splice(0, this.state.events.length - MAX_EVENTS_KEPT);
    try {
      this.options.events?.publish([event]);
    } catch (error) {
      console.error(`Key Vault emulator: the event sink refused ${eventType}:`, error);
    }
  }

  events(): KeyVaultEventGridEvent[] {
    return [...this.state.events];
  }

  /**
   * Fires what became due at the clock's now: KeyNearExpiry once per version when it enters its notify window,
   * KeyExpired once per version at `exp`, and the Rotate lifetime action of a policy (a new version).
   * Calls that overlap wait for the one running, so a version never fires twice.
   */
  checkExpiry(): Promise<void> {
    const run = async (): Promise<void> => {
      const now = this.options.clock.now();
      const nowSeconds = epoch(now);
      let changed = false;
      for (const [vaultName, v] of Object.entries(this.state.vaults)) {
        for (const key of Object.values(v.keys)) {
          if (key.deleted || key.versions.length === 0) continue;
          const watched =
            this.options.expiryEventsFor === 'all' ? key.versions : [key.versions[key.versions.length - 1]!];
          // The policy's Notify action sets the window; without one Key Vault notifies 30 days ahead.
          const notify =
            key.policy?.lifetimeActions.find((a) => a.action.type === 'Notify')?.trigger.timeBeforeExpiry ??
            DEFAULT_NOTIFY_BEFORE_EXPIRY;
          const notifyBefore = parseIsoDuration(notify);
          for (const version of watched) {
            if (version.exp === undefined) continue;
            const expDate = new Date(version.exp * 1000);
            if (notifyBefore && !version.nearExpiryNotified && now >= subtractIsoDuration(expDate, notifyBefore)) {
              version.nearExpiryNotified = true;
              changed = true;
              this.emit('Microsoft.KeyVault.KeyNearExpiry', vaultName, key, version);
            }
            if (!version.expiredNotified && nowSeconds >= version.exp) {
              version.expiredNotified = true;
              changed = true;
              this.emit('Microsoft.KeyVault.KeyExpired', vaultName, key, version);
            }
          }
          const rotate = key.policy?.lifetimeActions.find((a) => a.action.type === 'Rotate');
          if (rotate) {
            const current = key.versions[key.versions.length - 1]!;
            const after = rotate.trigger.timeAfterCreate ? parseIsoDuration(rotate.trigger.timeAfterCreate) : undefined;
            const before = rotate.trigger.timeBeforeExpiry
              ? parseIsoDuration(rotate.trigger.timeBeforeExpiry)
              : undefined;
            const due = after
              ? addIsoDuration(new Date(current.created * 1000), after)
              : before && current.exp !== undefined
                ? subtractIsoDuration(new Date(current.exp * 1000), before)
                : undefined;
            if (due && now >= due) await this.rotateKey(vaultName, key.name);
          }
        }
      }
      if (changed) this.save();
    };
    const next = (this.checking ?? Promise.resolve()).then(run, run);
    this.checking = next;
    const settle = (): void => {
      if (this.checking === next) this.checking = undefined;
    };
    next.then(settle, settle);
    return next;
  }

  /** Resolves once no expiry check is running. */
  async idle(): Promise<void> {
    while (this.checking) await this.checking.catch(() => undefined);
  }

  /** Forgets every key and event (the vault list and the clock stay). */
  reset(): void {
    this.state = { formatVersion: 1, vaults: {}, events: [] };
    this.keyObjects.clear();
    this.save();
  }
}
