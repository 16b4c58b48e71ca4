// Read-only values in a hub PUT body, refused the way the service would refuse them.
//
// Which fields: those iothub.json marks `readOnly` (2023-06-30-preview through 2026-08-01-preview): id, name, type,
// systemData, sku.tier, identity.principalId/tenantId, principalId/clientId of each user-assigned identity,
// properties.provisioningState/state/hostName/locations (and deviceHostName/serviceHostName/iotHubDetails from
// 2026-08-01-preview), and eventHubEndpoints.*.partitionIds/path/endpoint. `etag` is writable in the spec and stays.
//
// "Refuse" means refuse any presence, not only a changed value: Swagger's readOnly says such a property MUST NOT be
// sent in a request, Microsoft's generated SDK serializers drop these properties, the IoT CLI extension's
// hub_description_for_write strips them before its PUT, and a client that passes this stricter check works whether
// the real RP ignores such values or rejects them. Three exceptions follow what the platform really does:
// - `systemData` is ARM's, which ignores it in requests: @azure/arm-iothub 6.3.0 itself sends it back on update;
// - `identity` is validated by ARM's managed-identity layer, which accepts for each user-assigned identity `{}`,
//   null or the resource's existing value, and answers anything else with ARM's 400 InvalidIdentityValues;
// - `properties.privateEndpointConnections` is writable in the spec (the SDK sends it back), but connections are
//   managed through their own API: an unchanged list is accepted, a different one refused.
import { isDeepStrictEqual } from 'node:util';
import { ArmError, iotHubError } from './errors';
import type { JsonObject } from './hubModel';

/** IoT Hub's ArgumentInvalid code, for a request argument the RP refuses. */
export const ARGUMENT_INVALID = 400004;

const READ_ONLY_TOP_LEVEL = ['id', 'name', 'type'];
const READ_ONLY_PROPERTIES = [
  'provisioningState',
  'state',
  'hostName',
  'locations',
  'deviceHostName',
  'serviceHostName',
  'iotHubDetails',
];
const READ_ONLY_EVENT_HUB_ENDPOINT = ['partitionIds', 'path', 'endpoint'];

const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** The read-only properties a PUT body carries, as JSON paths. */
export function readOnlyPaths(body: JsonObject): string[] {
  const found = READ_ONLY_TOP_LEVEL.filter((field) => field in body);
  if (isObject(body.sku) && 'tier' in body.sku) found.push('sku.tier');
  const properties = body.properties;
  if (isObject(properties)) {
    for (const field of READ_ONLY_PROPERTIES) if (field in properties) found.push(`properties.${field}`);
    if (isObject(properties.eventHubEndpoints)) {
      for (const [name, endpoint] of Object.entries(properties.eventHubEndpoints)) {
        if (!isObject(endpoint)) continue;
        for (const field of READ_ONLY_EVENT_HUB_ENDPOINT) {
          if (field in endpoint) found.push(`properties.eventHubEndpoints.${name}.${field}`);
        }
      }
    }
  }
  return found;
}

function invalidIdentity(message: string): ArmError {
  return new ArmError(400, 'InvalidIdentityValues', message);
}

/** ARM's managed-identity rule: `{}`, null or exactly what the resource already has. */
function checkIdentity(identity: unknown, current: JsonObject | undefined): void {
  if (!isObject(identity)) return;
  const existing = isObject(current?.identity) ? current.identity : {};
  for (const field of ['principalId', 'tenantId']) {
    if (field in identity && identity[field] !== existing[field]) {
      throw invalidIdentity(
        `Invalid value for the identity property '${field}': it is assigned by Azure and may only be omitted ` +
          'or carry the resource existing value.',
      );
    }
  }
  if (!isObject(identity.userAssignedIdentities)) return;
  const existingEntries = isObject(existing.userAssignedIdentities) ? existing.userAssignedIdentities : {};
  for (const [id, value] of Object.entries(identity.userAssignedIdentities)) {
    if (value === null || (isObject(value) && Object.keys(value).length === 0)) continue;
    const sameId = Object.keys(existingEntries).find((known) => known.toLowerCase() === id.toLowerCase());
    if (sameId !== undefined && isDeepStrictEqual(value, existingEntries[sameId])) continue;
    throw invalidIdentity(
      `Invalid value for the identities '${id}'. The 'UserAssignedIdentities' property keys should only be empty ` +
        'json objects, null or the resource existing property.',
    );
  }
}

/**
 * Throws the service's 400 when `body` carries read-only values. `current` is the hub as a preview api-version
 * renders it now (undefined on create).
 */
export function assertWritable(body: JsonObject, current: JsonObject | undefined): void {
  const readOnly = readOnlyPaths(body);
  if (readOnly.length > 0) {
    throw iotHubError(
      400,
      ARGUMENT_INVALID,
      `The request sets read-only properties: ${readOnly.map((p) => `'${p}'`).join(', ')}. They are set by the ` +
        'service and must not be sent; remove them from the request body.',
    );
  }
  checkIdentity(body.identity, current);
  const connections = isObject(body.properties) ? body.properties.privateEndpointConnections : undefined;
  const currentProperties = isObject(current?.properties) ? current.properties : {};
  if (
    connections !== undefined &&
    !isDeepStrictEqual(connections, currentProperties.privateEndpointConnections ?? [])
  ) {
    throw iotHubError(
      400,
      ARGUMENT_INVALID,
      "'properties.privateEndpointConnections' cannot be changed by updating the IoT hub: private endpoint " +
        'connections are managed with their own API (privateEndpointConnections).',
    );
  }
}
