// Reading and editing an IoT hub's CMK reference without touching anything else on the resource.
import { referencesKey, versionOf } from './keyId';
import type { KeyName } from './keyId';
import type { JsonObject } from './ports';

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function keyVaultProperties(body: JsonObject): JsonObject[] {
  const properties = body.properties;
  if (!isObject(properties) || !isObject(properties.encryption)) return [];
  const list = properties.encryption.keyVaultProperties;
  return Array.isArray(list) ? list.filter(isObject) : [];
}

/** Every key identifier the hub's encryption settings reference. */
export function keyIdentifiersOf(body: JsonObject): string[] {
  return keyVaultProperties(body)
    .map((p) => p.keyIdentifier)
    .filter((id): id is string => typeof id === 'string');
}

/** ARM's `properties.provisioningState` (`Succeeded`, `Updating`, ...), when the hub document carries one. */
export function provisioningStateOf(body: JsonObject): string | undefined {
  const properties = body.properties;
  return isObject(properties) && typeof properties.provisioningState === 'string'
    ? properties.provisioningState
    : undefined;
}

/** The hub's identifiers that reference `key` (any version). */
export function identifiersForKey(body: JsonObject, key: KeyName): string[] {
  return keyIdentifiersOf(body).filter((id) => referencesKey(id, key));
}

/** The versions of `key` the hub currently uses (undefined entries for versionless references). */
export function versionsForKey(body: JsonObject, key: KeyName): (string | undefined)[] {
  return identifiersForKey(body, key).map(versionOf);
}

/**
 * A copy of the hub in which every reference to `key` points at `targetId`; every other field, known or not,
 * stays exactly as read (ARM PUT replaces the whole resource).
 */
export function withKeyIdentifier(body: JsonObject, key: KeyName, targetId: string): JsonObject {
  const copy = structuredClone(body);
  for (const entry of keyVaultProperties(copy)) {
    if (typeof entry.keyIdentifier === 'string' && referencesKey(entry.keyIdentifier, key))
      entry.keyIdentifier = targetId;
  }
  return copy;
}

/** The subscription (lower case) of an ARM resource id such as a hub's; '' when the id names none. */
export function subscriptionOf(resourceId: string): string {
  return (/^\/subscriptions\/([^/]+)/i.exec(resourceId)?.[1] ?? '').toLowerCase();
}

/** Placeholder until the read-only field list lands (see the emu branch): the body as read. */
export function hubBodyForWrite(body: JsonObject): JsonObject {
  return body;
}
