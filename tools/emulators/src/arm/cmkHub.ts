// The body of an IoT hub encrypted with a customer-managed key, as a preview api-version PUT carries it: the
// shape the sandbox, the tests and the benchmark seed their hubs with.
import type { JsonObject } from './hubModel';

export interface CmkHubOptions {
  keyIdentifier: string;
  /** Resource id of the user-assigned identity the hub reads its key with. */
  identity: string;
  location?: string;
  tags?: Record<string, string>;
  capacity?: number;
  /** More `properties` (routing, IP filters, fields the rotator does not know), kept as given. */
  properties?: JsonObject;
}

export function cmkHub(options: CmkHubOptions): JsonObject {
  return {
    location: options.location ?? 'westeurope',
    tags: options.tags ?? {},
    sku: { name: 'S1', capacity: options.capacity ?? 1 },
    identity: { type: 'UserAssigned', userAssignedIdentities: { [options.identity]: {} } },
    properties: {
      encryption: {
        keySource: 'Microsoft.KeyVault',
        keyVaultProperties: [
          { keyIdentifier: options.keyIdentifier, identity: { userAssignedIdentity: options.identity } },
        ],
      },
      minTlsVersion: '1.2',
      ...options.properties,
    },
  };
}
