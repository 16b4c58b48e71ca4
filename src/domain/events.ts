// Key Vault events as they reach the function: EventGridEvent or CloudEvents 1.0, PascalCase data (camelCase
// accepted too), NBF/EXP as numbers, strings (with stray spaces) or null.
import { ValidationError } from './errors';
import type { FieldProblem } from './errors';
import { isKeyVersion, tryParseKeyId } from './keyId';
import type { KeyName } from './keyId';

export const KEY_EVENT_TYPES = ['KeyNearExpiry', 'KeyExpired', 'KeyNewVersionCreated'] as const;
export type KeyEventType = (typeof KEY_EVENT_TYPES)[number];

export interface KeyVaultEvent {
  id: string;
  type: KeyEventType;
  key: KeyName;
  version: string;
  /** The versioned key identifier the event is about. */
  keyId: string;
  notBefore?: Date;
  expiresOn?: Date;
  eventTime?: Date;
}

/** An event we understood but do not act on (a secret's event, a vault policy change, ...). */
export interface IgnoredEvent {
  id: string;
  type: string;
  ignored: string;
}

const PREFIX = 'Microsoft.KeyVault.';
/**
 * Bounds on what is copied into audit records and logs. Event Grid ids are GUIDs in practice and key identifiers
 * are short (a vault host, a 127-character name, a 32-character version); anything longer is not Key Vault's.
 */
const MAX_ID = 256;
const MAX_TYPE = 256;
const MAX_KEY_ID = 512;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads `Name` or `name` (any casing, stray spaces around the key as in Key Vault's `"ObjectName "`) from the data. */
function field(data: Record<string, unknown>, name: string): unknown {
  const wanted = name.toLowerCase();
  for (const [k, v] of Object.entries(data)) if (k.trim().toLowerCase() === wanted) return v;
  return undefined;
}

/** Epoch seconds as number or string (spaces tolerated), an ISO date string, or null. Undefined when absent or unreadable. */
export function parseEpoch(value: unknown): Date | undefined {
  let ms: number;
  if (typeof value === 'number') ms = value * 1000;
  else if (typeof value === 'string') {
    const text = value.trim();
    ms = /^-?\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : Date.parse(text);
  } else return undefined;
  const date = new Date(ms);
  // Out-of-range values make an Invalid Date, which would throw later in toISOString().
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value.trim() || undefined : undefined;
}

/**
 * Parses one event object (either schema). Throws ValidationError naming every bad field; returns an IgnoredEvent
 * for well-formed events of other types.
 */
export function parseKeyVaultEvent(input: unknown): KeyVaultEvent | IgnoredEvent {
  if (!isObject(input)) throw new ValidationError([{ field: 'event', message: 'must be a JSON object' }]);
  const cloud = 'specversion' in input;
  const typeField = cloud ? 'type' : 'eventType';
  const problems: FieldProblem[] = [];
  const id = str(input.id);
  if (!id) problems.push({ field: 'id', message: 'is required' });
  else if (id.length > MAX_ID) problems.push({ field: 'id', message: `must be at most ${MAX_ID} characters` });
  const fullType = str(input[typeField]);
  if (!fullType) problems.push({ field: typeField, message: 'is required' });
  else if (fullType.length > MAX_TYPE)
    problems.push({ field: typeField, message: `must be at most ${MAX_TYPE} characters` });
  if (problems.length) throw new ValidationError(problems);

  const shortType = fullType!.startsWith(PREFIX) ? fullType!.slice(PREFIX.length) : undefined;
  if (!shortType || !(KEY_EVENT_TYPES as readonly string[]).includes(shortType)) {
    return { id: id!, type: fullType!, ignored: `event type ${fullType} is not a key rotation trigger` };
  }

  let data: unknown = input.data;
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch {
      throw new ValidationError([{ field: 'data', message: 'is a string that is not JSON' }]);
    }
  }
  if (!isObject(data)) throw new ValidationError([{ field: 'data', message: 'must be an object' }]);

  const rawId = str(field(data, 'Id'));
  // Stryker disable next-line EqualityOperator: no valid key identifier is anywhere near 512 characters long.
  if (rawId && rawId.length > MAX_KEY_ID) {
    throw new ValidationError([{ field: 'data.Id', message: `must be at most ${MAX_KEY_ID} characters` }]);
  }
  const parsed = tryParseKeyId(rawId);
  if (typeof parsed === 'string') throw new ValidationError([{ field: 'data.Id', message: parsed }]);
  const version = parsed.version ?? str(field(data, 'Version'));
  if (!version)
    throw new ValidationError([{ field: 'data.Version', message: 'is required when data.Id has no version' }]);
  if (!isKeyVersion(version)) throw new ValidationError([{ field: 'data.Version', message: 'is not a key version' }]);
  const dataVersion = str(field(data, 'Version'));
  if (parsed.version && dataVersion && dataVersion !== parsed.version) {
    throw new ValidationError([
      { field: 'data.Version', message: `does not match the version in data.Id (${parsed.version})` },
    ]);
  }
  const objectName = str(field(data, 'ObjectName'));
  if (objectName && objectName.toLowerCase() !== parsed.name.toLowerCase()) {
    throw new ValidationError([
      { field: 'data.ObjectName', message: `does not match the key name in data.Id (${parsed.name})` },
    ]);
  }

  const key: KeyName = { vaultUrl: parsed.vaultUrl, name: parsed.name };
  const time = parseEpoch(cloud ? input.time : input.eventTime);
  const notBefore = parseEpoch(field(data, 'NBF'));
  const expiresOn = parseEpoch(field(data, 'EXP'));
  return {
    id: id!,
    type: shortType as KeyEventType,
    key,
    version,
    keyId: `${key.vaultUrl}/keys/${key.name}/${version}`,
    ...(notBefore ? { notBefore } : {}),
    ...(expiresOn ? { expiresOn } : {}),
    ...(time ? { eventTime: time } : {}),
  };
}

export function isIgnored(event: KeyVaultEvent | IgnoredEvent): event is IgnoredEvent {
  return 'ignored' in event;
}
