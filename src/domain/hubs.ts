// Reading and editing an IoT hub's CMK reference without touching anything else on the resource.
import { referencesKey, versionOf } from './keyId';
import type { KeyName } from './keyId';
import type { JsonObject } from './ports';

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function keyVaultProperties(body: JsonObject): JsonObject[] {
  const properties = body.properties;
  // Stryker disable next-line ArrayDeclaration: callers read only objects' keyIdentifier, so any non-object entry is ignored.
  if (!isObject(properties) || !isObject(properties.encryption)) return [];
  const list = properties.encryption.keyVaultProperties;
  // Stryker disable next-line ArrayDeclaration: as above.
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

/** The resource group of an ARM resource id, as written; '' when the id names none. */
export function resourceGroupOf(resourceId: string): string {
  return /\/resourceGroups\/([^/]+)/i.exec(resourceId)?.[1] ?? '';
}

/** Read-only in iothub.json (2023-06-30-preview … 2026-08-01-preview): set by the service, never sent on a write. */
const READ_ONLY_TOP_LEVEL = ['id', 'name', 'type', 'systemData'];
const READ_ONLY_IDENTITY = ['principalId', 'tenantId'];
const READ_ONLY_USER_IDENTITY = ['principalId', 'clientId'];
/**
 * `privateEndpointConnections` is managed with its own API; `deviceHostName`, `serviceHostName` and `iotHubDetails`
 * are read-only from 2026-08-01-preview on (harmless to drop for older versions, which do not return them).
 */
const READ_ONLY_PROPERTIES = [
  'provisioningState',
  'state',
  'hostName',
  'locations',
  'deviceHostName',
  'serviceHostName',
  'iotHubDetails',
  'privateEndpointConnections',
];
const READ_ONLY_EVENT_HUB_ENDPOINT = ['partitionIds', 'path', 'endpoint'];

const omit = (object: JsonObject, fields: readonly string[]): void => {
  for (const field of fields) delete object[field];
};

/**
 * The body for a PUT of a hub read with GET: a copy without the fields the service owns (ids, systemData, sku.tier,
 * the identities' principal/client/tenant ids — each user identity becomes `{}` — provisioning state, host names,
 * locations, the Event Hub endpoint's partitionIds/path/endpoint, private endpoint connections). Everything else is
 * kept as read, `etag` and fields this code does not know included; the input is not modified.
 */
export function hubBodyForWrite(body: JsonObject): JsonObject {
  const copy = structuredClone(body);
  omit(copy, READ_ONLY_TOP_LEVEL);
  if (isObject(copy.sku)) omit(copy.sku, ['tier']);
  if (isObject(copy.identity)) {
    omit(copy.identity, READ_ONLY_IDENTITY);
    const userIdentities = copy.identity.userAssignedIdentities;
    if (isObject(userIdentities)) {
      for (const value of Object.values(userIdentities)) if (isObject(value)) omit(value, READ_ONLY_USER_IDENTITY);
    }
  }
  if (isObject(copy.properties)) {
    omit(copy.properties, READ_ONLY_PROPERTIES);
    const endpoints = copy.properties.eventHubEndpoints;
    if (isObject(endpoints)) {
      for (const endpoint of Object.values(endpoints))
        if (isObject(endpoint)) omit(endpoint, READ_ONLY_EVENT_HUB_ENDPOINT);
    }
  }
  return copy;
}
