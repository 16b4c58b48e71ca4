import { describe, expect, it } from 'vitest';
import {
  hubBodyForWrite,
  identifiersForKey,
  keyIdentifiersOf,
  versionsForKey,
  withKeyIdentifier,
} from '../../src/domain/hubs';
import type { JsonObject } from '../../src/domain/ports';

const KEY = { vaultUrl: 'https://contoso.vault.azure.net', name: 'iot-cmk' };
const OLD_ID = 'https://contoso.vault.azure.net/keys/iot-cmk/1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6';
const NEW_ID = 'https://contoso.vault.azure.net/keys/iot-cmk/f0e1d2c3b4a5968778695a4b3c2d1e0f';
const OTHER_KEY_ID = 'https://contoso.vault.azure.net/keys/other-cmk/0a1b2c3d4e5f60718293a4b5c6d7e8f9';
const IDENTITY_ID =
  '/subscriptions/91d12660-3dec-467a-be2a-213b5544ddc0/resourceGroups/myResourceGroup/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hub-cmk';

/**
 * An IoT hub as ARM returns it for api-version 2023-06-30-preview (shape per the iothub.json spec and its examples),
 * with fields this service does not know about at several depths.
 */
function hubResource(keyVaultProperties: JsonObject[]): JsonObject {
  return {
    id: '/subscriptions/91d12660-3dec-467a-be2a-213b5544ddc0/resourceGroups/myResourceGroup/providers/Microsoft.Devices/IotHubs/testHub',
    name: 'testHub',
    type: 'Microsoft.Devices/IotHubs',
    location: 'westeurope',
    tags: { env: 'prod' },
    etag: 'AAAAAAFD6M4=',
    futureTopLevelField: { nested: [1, 2, { deep: true }] },
    properties: {
      state: 'Active',
      provisioningState: 'Succeeded',
      ipFilterRules: [{ filterName: 'rule1', action: 'Accept', ipMask: '131.117.159.53' }],
      networkRuleSets: {
        defaultAction: 'Deny',
        applyToBuiltInEventHubEndpoint: true,
        ipRules: [{ filterName: 'rule1', action: 'Allow', ipMask: '131.117.159.53' }],
      },
      hostName: 'testHub.azure-devices.net',
      eventHubEndpoints: {
        events: {
          retentionTimeInDays: 1,
          partitionCount: 2,
          partitionIds: ['0', '1'],
          path: 'testhub',
          endpoint: 'sb://iothub-ns-testhub-245306-76aca8e13b.servicebus.windows.net/',
        },
      },
      routing: {
        endpoints: { serviceBusQueues: [], serviceBusTopics: [], eventHubs: [], storageContainers: [] },
        routes: [],
        fallbackRoute: {
          name: '$fallback',
          source: 'DeviceMessages',
          condition: 'true',
          endpointNames: ['events'],
          isEnabled: true,
        },
      },
      storageEndpoints: { $default: { sasTtlAsIso8601: 'PT1H', connectionString: '', containerName: '' } },
      messagingEndpoints: {
        fileNotifications: { lockDurationAsIso8601: 'PT1M', ttlAsIso8601: 'PT1H', maxDeliveryCount: 10 },
      },
      enableFileUploadNotifications: false,
      cloudToDevice: {
        maxDeliveryCount: 10,
        defaultTtlAsIso8601: 'PT1H',
        feedback: { lockDurationAsIso8601: 'PT1M', ttlAsIso8601: 'PT1H', maxDeliveryCount: 10 },
      },
      features: 'None',
      minTlsVersion: '1.2',
      disableLocalAuth: true,
      locations: [
        { location: 'westeurope', role: 'primary' },
        { location: 'northeurope', role: 'secondary' },
      ],
      enableDataResidency: false,
      rootCertificate: { enableRootCertificateV2: true, lastUpdatedTimeUtc: '2024-01-01T00:00:00Z' },
      ipVersion: 'ipv4ipv6',
      encryption: {
        keySource: 'Microsoft.KeyVault',
        keyVaultProperties,
        futureEncryptionField: 'kept',
      },
      futurePropertiesField: ['kept'],
    },
    sku: { name: 'S1', tier: 'Standard', capacity: 1 },
    identity: {
      type: 'UserAssigned',
      userAssignedIdentities: {
        [IDENTITY_ID]: {
          principalId: '00000000-0000-0000-0000-0000000000aa',
          clientId: '00000000-0000-0000-0000-0000000000bb',
        },
      },
    },
    systemData: { createdAt: '2021-01-30T00:28:38.963Z', lastModifiedByType: 'Application' },
  };
}

function entry(keyIdentifier: string): JsonObject {
  return { keyIdentifier, identity: { userAssignedIdentity: IDENTITY_ID }, futureEntryField: { x: 1 } };
}

/** The expected result: the input with entry `index`'s keyIdentifier replaced. */
function withEntryReplaced(hub: JsonObject, replacements: Record<number, string>): JsonObject {
  const expected = structuredClone(hub);
  const entries = (expected.properties as { encryption: { keyVaultProperties: JsonObject[] } }).encryption
    .keyVaultProperties;
  for (const [index, id] of Object.entries(replacements)) entries[Number(index)]!.keyIdentifier = id;
  return expected;
}

describe('withKeyIdentifier', () => {
  it('changes only the keyIdentifier of the matching entry and leaves the input untouched', () => {
    const hub = hubResource([entry(OLD_ID)]);
    const snapshot = structuredClone(hub);
    const updated = withKeyIdentifier(hub, KEY, NEW_ID);
    expect(updated).toStrictEqual(withEntryReplaced(snapshot, { 0: NEW_ID }));
    expect(hub).toStrictEqual(snapshot);
    expect(updated).not.toBe(hub);
  });

  it('repoints every entry for the key, including versionless and differently cased ones, but not other keys', () => {
    const hub = hubResource([
      entry(OLD_ID),
      entry(OTHER_KEY_ID),
      entry('https://CONTOSO.vault.azure.net/keys/IOT-CMK'),
      entry('https://fabrikam.vault.azure.net/keys/iot-cmk/1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6'),
    ]);
    const updated = withKeyIdentifier(hub, KEY, NEW_ID);
    expect(updated).toStrictEqual(withEntryReplaced(hub, { 0: NEW_ID, 2: NEW_ID }));
  });

  it('leaves a hub alone when no entry references the key', () => {
    const hub = hubResource([entry(OTHER_KEY_ID)]);
    expect(withKeyIdentifier(hub, KEY, NEW_ID)).toStrictEqual(hub);
  });

  it('copies hubs without customer-managed encryption unchanged', () => {
    const noEncryption = hubResource([]);
    delete (noEncryption.properties as JsonObject).encryption;
    expect(withKeyIdentifier(noEncryption, KEY, NEW_ID)).toStrictEqual(noEncryption);
    expect(withKeyIdentifier({ id: 'x' }, KEY, NEW_ID)).toStrictEqual({ id: 'x' });

    const malformed = hubResource([]);
    (malformed.properties as JsonObject).encryption = { keySource: 'Microsoft.KeyVault', keyVaultProperties: 'oops' };
    expect(withKeyIdentifier(malformed, KEY, NEW_ID)).toStrictEqual(malformed);
  });

  it('skips entries that are not objects or carry no string identifier', () => {
    const hub = hubResource([entry(OLD_ID)]);
    const list = (hub.properties as { encryption: { keyVaultProperties: unknown[] } }).encryption.keyVaultProperties;
    list.unshift(null, 'text', { keyIdentifier: 42 });
    const updated = withKeyIdentifier(hub, KEY, NEW_ID);
    const expected = structuredClone(hub);
    const expectedList = (expected.properties as { encryption: { keyVaultProperties: JsonObject[] } }).encryption
      .keyVaultProperties;
    expectedList[3]!.keyIdentifier = NEW_ID;
    expect(updated).toStrictEqual(expected);
  });
});

describe('reading key references', () => {
  const hub = hubResource([
    entry(OLD_ID),
    entry(OTHER_KEY_ID),
    entry('https://contoso.vault.azure.net/keys/iot-cmk'),
    { identity: { userAssignedIdentity: IDENTITY_ID } },
  ]);

  it('lists every identifier, then those for one key, then their versions', () => {
    expect(keyIdentifiersOf(hub)).toEqual([OLD_ID, OTHER_KEY_ID, 'https://contoso.vault.azure.net/keys/iot-cmk']);
    expect(identifiersForKey(hub, KEY)).toEqual([OLD_ID, 'https://contoso.vault.azure.net/keys/iot-cmk']);
    expect(versionsForKey(hub, KEY)).toEqual(['1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6', undefined]);
  });

  it('finds nothing on a hub without encryption', () => {
    expect(keyIdentifiersOf({ properties: { state: 'Active' } })).toEqual([]);
    expect(identifiersForKey({}, KEY)).toEqual([]);
  });
});

describe('hubBodyForWrite', () => {
  /** What the service owns, as a GET of api-version 2026-08-01-preview can return it. */
  function asRead(): JsonObject {
    const hub = hubResource([entry(OLD_ID)]);
    hub.identity = {
      type: 'SystemAssigned, UserAssigned',
      principalId: '00000000-0000-0000-0000-0000000000cc',
      tenantId: '00000000-0000-0000-0000-0000000000dd',
      userAssignedIdentities: {
        [IDENTITY_ID]: {
          principalId: '00000000-0000-0000-0000-0000000000aa',
          clientId: '00000000-0000-0000-0000-0000000000bb',
        },
        '/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other': {
          principalId: '00000000-0000-0000-0000-0000000000ee',
          clientId: '00000000-0000-0000-0000-0000000000ff',
          futureIdentityField: 'kept',
        },
      },
      futureIdentitySetting: 'kept',
    };
    Object.assign(hub.properties as JsonObject, {
      deviceHostName: 'testhub.device.azure-devices.net',
      serviceHostName: 'testhub.service.azure-devices.net',
      iotHubDetails: { gatewayVersion: 'V2' },
      privateEndpointConnections: [{ id: 'pec-1', properties: { privateEndpoint: { id: 'pe-1' } } }],
    });
    return hub;
  }

  it('removes exactly the read-only fields and keeps everything else, unknown fields and etag included', () => {
    const read = asRead();
    const snapshot = structuredClone(read);
    const written = hubBodyForWrite(read);

    const expected = structuredClone(snapshot) as Record<string, any>;
    for (const field of ['id', 'name', 'type', 'systemData']) delete expected[field];
    delete expected.sku.tier;
    delete expected.identity.principalId;
    delete expected.identity.tenantId;
    expected.identity.userAssignedIdentities = {
      [IDENTITY_ID]: {},
      '/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other': {
        futureIdentityField: 'kept',
      },
    };
    for (const field of [
      'provisioningState',
      'state',
      'hostName',
      'locations',
      'deviceHostName',
      'serviceHostName',
      'iotHubDetails',
      'privateEndpointConnections',
    ]) {
      delete expected.properties[field];
    }
    expected.properties.eventHubEndpoints.events = { retentionTimeInDays: 1, partitionCount: 2 };

    expect(written).toStrictEqual(expected);
    expect(written).toMatchObject({
      etag: 'AAAAAAFD6M4=',
      futureTopLevelField: { nested: [1, 2, { deep: true }] },
      identity: { futureIdentitySetting: 'kept' },
      properties: { futurePropertiesField: ['kept'], encryption: { futureEncryptionField: 'kept' } },
    });
    expect(read).toStrictEqual(snapshot);
  });

  it('composes with withKeyIdentifier: only the key identifier differs from the writable copy', () => {
    const read = asRead();
    const moved = hubBodyForWrite(withKeyIdentifier(read, KEY, NEW_ID));
    expect(moved).toStrictEqual(withEntryReplaced(hubBodyForWrite(read), { 0: NEW_ID }));
  });

  it('copies bodies without those sections, or with odd shapes, without failing', () => {
    expect(hubBodyForWrite({ location: 'westeurope', futureField: 1 })).toStrictEqual({
      location: 'westeurope',
      futureField: 1,
    });
    const odd = { identity: { type: 'None', userAssignedIdentities: { a: null } }, sku: 'S1', properties: [] };
    expect(hubBodyForWrite(odd)).toStrictEqual(odd);
    expect(hubBodyForWrite({ properties: { eventHubEndpoints: { events: 'x' } } })).toStrictEqual({
      properties: { eventHubEndpoints: { events: 'x' } },
    });
  });
});
