// The Microsoft.Devices/IotHubs resource as the REST specs describe it (azure-rest-api-specs, iothub.json):
// which api-versions exist, what a PUT body must hold, which fields the service owns, and how each version renders a hub.
import { createHash } from 'node:crypto';
import * as z from 'zod';
import { ArmError, formatPath, iotHubError } from './errors';
import { ARGUMENT_INVALID } from './hubReadonly';

/**
 * GA versions do not know `properties.encryption` (the 6.3.0 SDK sends 2023-06-30); preview versions do.
 * 2026-08-01-preview is the newest preview in azure-rest-api-specs with `encryption`
 * (specification/iothub/resource-manager/Microsoft.Devices/IoTHub/preview/2026-08-01-preview/iothub.json).
 */
const GA_API_VERSIONS = ['2021-07-02', '2023-06-30'] as const;
const PREVIEW_API_VERSIONS = [
  '2022-11-15-preview',
  '2023-06-30-preview',
  '2025-08-01-preview',
  '2026-08-01-preview',
] as const;
export const SUPPORTED_API_VERSIONS: readonly string[] = [...GA_API_VERSIONS, ...PREVIEW_API_VERSIONS];

export type ApiFlavour = 'ga' | 'preview';

/** Throws ARM's 400 for a missing or unknown api-version (ARM checks it before the request reaches the RP). */
export function apiFlavourOf(apiVersion: string | null): ApiFlavour {
  if (!apiVersion) {
    throw new ArmError(
      400,
      'MissingApiVersionParameter',
      'The api-version query parameter (?api-version=) is required for all requests.',
    );
  }
  if ((GA_API_VERSIONS as readonly string[]).includes(apiVersion)) return 'ga';
  if ((PREVIEW_API_VERSIONS as readonly string[]).includes(apiVersion)) return 'preview';
  throw new ArmError(
    400,
    'NoRegisteredProviderFound',
    `No registered resource provider found for API version '${apiVersion}' and type 'IotHubs'. ` +
      `The supported api-versions are '${SUPPORTED_API_VERSIONS.join(', ')}'.`,
  );
}

export const RESOURCE_TYPE = 'Microsoft.Devices/IotHubs';

/** From the spec's Resource.name pattern. */
const HUB_NAME = /^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{2,49}[a-zA-Z0-9]$/;

export function assertHubName(name: string): void {
  if (!HUB_NAME.test(name)) {
    throw new ArmError(
      400,
      'InvalidResourceName',
      `The IoT hub name '${name}' is invalid: use 3-50 letters, digits or hyphens, not all digits, ` +
        'not starting with a hyphen and ending with a letter or digit.',
    );
  }
}

const SKU_TIERS: Record<string, string> = {
  F1: 'Free',
  S1: 'Standard',
  S2: 'Standard',
  S3: 'Standard',
  B1: 'Basic',
  B2: 'Basic',
  B3: 'Basic',
};

const IDENTITY_TYPES = ['SystemAssigned', 'UserAssigned', 'SystemAssigned, UserAssigned', 'None'] as const;

const hubBodySchema = z.looseObject({
  location: z.string({ error: 'is required and must be a string' }).min(1, 'must not be empty'),
  sku: z.looseObject(
    {
      name: z.enum(Object.keys(SKU_TIERS) as [string, ...string[]], {
        error: `must be one of ${Object.keys(SKU_TIERS).join(', ')}`,
      }),
      capacity: z.number().int().min(1).optional(),
    },
    { error: 'is required and must be an object with a name' },
  ),
  tags: z.record(z.string(), z.string(), { error: 'must map tag names to strings' }).optional(),
  identity: z
    .looseObject({
      type: z.enum(IDENTITY_TYPES, { error: `must be one of '${IDENTITY_TYPES.join("', '")}'` }),
      userAssignedIdentities: z.record(z.string(), z.looseObject({}).nullable()).optional(),
    })
    .optional(),
  properties: z.looseObject({}, { error: 'must be an object' }).optional(),
});

/** Key Vault key URLs the hub can use: versioned, because the hub wraps its data key with one exact version. */
const VERSIONED_KEY_URL = /^https:\/\/[a-z0-9-]+\.vault\.azure\.net(?::443)?\/keys\/[a-z0-9-]+\/[a-z0-9]+$/i;
const USER_ASSIGNED_IDENTITY_ID =
  /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[^/]+$/i;

const encryptionSchema = z.looseObject({
  keySource: z
    .string({ error: "must be 'Microsoft.KeyVault'" })
    .refine((v) => v.toLowerCase() === 'microsoft.keyvault', "must be 'Microsoft.KeyVault'"),
  keyVaultProperties: z
    .array(
      z.looseObject({
        keyIdentifier: z
          .string({ error: 'is required' })
          .regex(
            VERSIONED_KEY_URL,
            'must be a versioned key URL: https://{vault}.vault.azure.net/keys/{name}/{version}',
          ),
        identity: z.looseObject(
          {
            userAssignedIdentity: z
              .string({ error: 'is required' })
              .regex(USER_ASSIGNED_IDENTITY_ID, 'must be the resource id of a user-assigned managed identity'),
          },
          { error: 'is required: the identity the hub uses to reach Key Vault' },
        ),
      }),
      { error: 'is required and must be an array' },
    )
    .length(1, 'must hold exactly one key'),
});

export type JsonObject = Record<string, unknown>;

export const isJsonObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** What the client may write: everything in a PUT body except the fields the service owns. */
export interface HubBody extends JsonObject {
  location: string;
  sku: JsonObject & { name: string };
  properties: JsonObject;
}

export interface HubEncryption {
  keyIdentifier: string;
  userAssignedIdentity: string;
}

/** A missing location is ARM's own check (tracked resources); the rest is the IoT Hub RP validating its body. */
function invalid(path: readonly PropertyKey[], message: string): ArmError {
  if (path.length === 1 && path[0] === 'location') {
    return new ArmError(400, 'LocationRequired', 'The location property is required for this definition.');
  }
  return iotHubError(400, ARGUMENT_INVALID, `The request content was invalid: '${formatPath(path)}' ${message}.`);
}

const SERVICE_OWNED_TOP_LEVEL = ['id', 'name', 'type', 'etag', 'systemData'];
const SERVICE_OWNED_PROPERTIES = [
  'provisioningState',
  'state',
  'hostName',
  'locations',
  'deviceHostName',
  'serviceHostName',
  'iotHubDetails',
  'privateEndpointConnections',
];

/** What gets stored of `identity`: the assignment only; the ids Azure assigns are rendered, never kept. */
function writableIdentity(identity: JsonObject): JsonObject {
  const { principalId: _principalId, tenantId: _tenantId, ...rest } = identity;
  const entries = rest.userAssignedIdentities;
  if (entries && typeof entries === 'object') {
    rest.userAssignedIdentities = Object.fromEntries(
      Object.entries(entries).map(([id, value]) => [id, value === null ? null : {}]),
    );
  }
  return rest;
}

/**
 * Validates a PUT body and returns what gets stored. ARM PUT replaces the resource, so unknown fields are kept as sent;
 * service-owned fields are dropped (the service keeps its own). A GA body's `properties.encryption` is not part of
 * that version's contract: it is dropped here, and the caller keeps the stored one.
 */
export function parseHubBody(raw: unknown, flavour: ApiFlavour): HubBody {
  if (!isJsonObject(raw)) {
    throw new ArmError(
      400,
      'InvalidRequestContent',
      'The request content was invalid: the body must be a JSON object.',
    );
  }
  const parsed = hubBodySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(issue?.path ?? [], issue?.message ?? 'is invalid');
  }
  const body = structuredClone(parsed.data) as JsonObject;
  for (const field of SERVICE_OWNED_TOP_LEVEL) delete body[field];
  if (parsed.data.identity) body.identity = writableIdentity(parsed.data.identity);
  const sku = { ...parsed.data.sku };
  delete sku.tier;
  const properties: JsonObject = { ...(parsed.data.properties ?? {}) };
  for (const field of SERVICE_OWNED_PROPERTIES) delete properties[field];
  if (flavour === 'ga' || properties.encryption === null) delete properties.encryption;
  const hub = { ...body, sku, properties } as HubBody;
  if (properties.encryption !== undefined) checkEncryption(hub);
  return hub;
}

function checkEncryption(hub: HubBody): void {
  const parsed = encryptionSchema.safeParse(hub.properties.encryption);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(['properties', 'encryption', ...(issue?.path ?? [])], issue?.message ?? 'is invalid');
  }
  const wanted = parsed.data.keyVaultProperties[0]?.identity.userAssignedIdentity.toLowerCase();
  const identity = hub.identity as { type?: string; userAssignedIdentities?: JsonObject } | undefined;
  const assigned = Object.keys(identity?.userAssignedIdentities ?? {}).map((id) => id.toLowerCase());
  if (!identity?.type?.includes('UserAssigned') || !assigned.includes(wanted ?? '')) {
    throw invalid(
      ['properties', 'encryption', 'keyVaultProperties', 0, 'identity', 'userAssignedIdentity'],
      'must name an identity listed in identity.userAssignedIdentities (with identity.type including UserAssigned)',
    );
  }
}

export function encryptionOf(hub: HubBody): HubEncryption | undefined {
  const encryption = hub.properties.encryption as
    { keyVaultProperties: [{ keyIdentifier: string; identity: { userAssignedIdentity: string } }] } | undefined;
  const entry = encryption?.keyVaultProperties[0];
  return entry && { keyIdentifier: entry.keyIdentifier, userAssignedIdentity: entry.identity.userAssignedIdentity };
}

export interface SystemData {
  createdBy: string;
  createdByType: string;
  createdAt: string;
  lastModifiedBy: string;
  lastModifiedByType: string;
  lastModifiedAt: string;
}

export interface RenderInput {
  id: string;
  ref: { name: string };
  etag: string;
  body: HubBody;
  provisioningState: string;
  state: string;
  systemData: SystemData;
}

/** ARM location names are lower case without spaces ("West Europe" → "westeurope"). */
export const normalizeLocation = (location: string): string => location.replace(/\s+/g, '').toLowerCase();

/** The tenant the emulated managed identities belong to. */
const EMULATOR_TENANT_ID = 'e1a70000-0000-4000-8000-000000000001';

/** A stable GUID-shaped id for something the service would assign (identity principals, namespace suffixes). */
function stableGuid(seed: string): string {
  const hex = createHash('sha256').update(seed.toLowerCase()).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** `identity` with what Azure assigns: the system identity's principal and tenant, each user identity's ids. */
function renderIdentity(hubId: string, identity: unknown): unknown {
  if (!isJsonObject(identity)) return identity;
  const rendered: JsonObject = { ...identity };
  if (typeof identity.type === 'string' && identity.type.includes('SystemAssigned')) {
    rendered.principalId = stableGuid(`${hubId}/system`);
    rendered.tenantId = EMULATOR_TENANT_ID;
  }
  if (isJsonObject(identity.userAssignedIdentities)) {
    rendered.userAssignedIdentities = Object.fromEntries(
      Object.entries(identity.userAssignedIdentities).map(([id, value]) => [
        id,
        value === null ? null : { principalId: stableGuid(`${id}/principal`), clientId: stableGuid(`${id}/client`) },
      ]),
    );
  }
  return rendered;
}

/** The built-in Event Hub-compatible endpoint: its writable settings as stored, its names as the service made them. */
function renderEventHubEndpoints(hubId: string, name: string, stored: unknown): JsonObject {
  const endpoints = isJsonObject(stored) ? stored : { events: { retentionTimeInDays: 1, partitionCount: 4 } };
  const suffix = stableGuid(hubId).replace(/-/g, '');
  return Object.fromEntries(
    Object.entries(endpoints).map(([key, value]) => {
      const settings = isJsonObject(value) ? value : {};
      const count = typeof settings.partitionCount === 'number' ? settings.partitionCount : 4;
      return [
        key,
        {
          ...settings,
          partitionIds: Array.from({ length: count }, (_, i) => String(i)),
          path: name.toLowerCase(),
          endpoint: `sb://iothub-ns-${name.toLowerCase().slice(0, 10)}-${parseInt(suffix.slice(0, 5), 16)}-${suffix.slice(5, 15)}.servicebus.windows.net/`,
        },
      ];
    }),
  );
}

/** The hub as `flavour` returns it: service-owned fields filled in, encryption only for preview versions. */
export function renderHub(hub: RenderInput, flavour: ApiFlavour): JsonObject {
  const { location, tags, sku, properties, identity, ...rest } = structuredClone(hub.body);
  if (flavour === 'ga') delete properties.encryption;
  return {
    id: hub.id,
    name: hub.ref.name,
    type: RESOURCE_TYPE,
    location,
    ...(tags === undefined ? {} : { tags }),
    etag: hub.etag,
    ...rest,
    ...(identity === undefined ? {} : { identity: renderIdentity(hub.id, identity) }),
    sku: { ...sku, tier: SKU_TIERS[sku.name] },
    properties: {
      ...properties,
      provisioningState: hub.provisioningState,
      state: hub.state,
      hostName: `${hub.ref.name.toLowerCase()}.azure-devices.net`,
      eventHubEndpoints: renderEventHubEndpoints(hub.id, hub.ref.name, properties.eventHubEndpoints),
      locations: [{ location: normalizeLocation(location), role: 'primary' }],
      privateEndpointConnections: [],
    },
    systemData: { ...hub.systemData },
  };
}
