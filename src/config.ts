// App settings, read and validated once. One error lists every problem; values of secrets are never echoed.
import * as z from 'zod';
import { normalizeVaultUrl } from './domain/keyId';

/** The first IoT Hub api-version whose IotHub model has `properties.encryption` (customer-managed keys, preview). */
const FIRST_API_VERSION_WITH_ENCRYPTION = '2023-06-30-preview';
/**
 * The default preview api-version. 2026-08-01-preview is newer and also has `encryption`, but its IotHubProperties
 * make `connectionProfile` required while the spec's own GET example does not return it: a body read with it could
 * be refused on PUT. 2025-08-01-preview has no such field; ROTATOR_IOTHUB_API_VERSION opts into a newer one.
 */
export const DEFAULT_IOTHUB_API_VERSION = '2025-08-01-preview';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const list = (value: string | undefined): string[] =>
  (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

const httpsUrl = z
  .string()
  .trim()
  .refine((v) => {
    try {
      return new URL(v).protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an https URL')
  .transform((v) => v.replace(/\/+$/, ''));

const intSetting = (min: number, max: number, fallback: number) =>
  z
    .string()
    .trim()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return fallback;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max} (got "${v}")` });
        return z.NEVER;
      }
      return n;
    });

const schema = z
  .object({
    ROTATOR_ALLOWED_VAULTS: z
      .string({ error: 'is required: comma-separated vault URLs such as https://contoso.vault.azure.net' })
      .transform((v, ctx) => {
        const urls = list(v);
        if (urls.length === 0) ctx.addIssue({ code: 'custom', message: 'must name at least one vault URL' });
        return urls.map((u) => {
          const normalized = normalizeVaultUrl(u);
          if (!normalized)
            ctx.addIssue({ code: 'custom', message: `"${u}" is not a vault URL like https://<name>.vault.azure.net` });
          return normalized ?? u;
        });
      }),
    ROTATOR_SUBSCRIPTION_IDS: z
      .string({ error: 'is required: comma-separated subscription ids to search for IoT hubs' })
      .transform((v, ctx) => {
        const ids = list(v);
        if (ids.length === 0) ctx.addIssue({ code: 'custom', message: 'must name at least one subscription id' });
        for (const id of ids)
          if (!GUID.test(id)) ctx.addIssue({ code: 'custom', message: `"${id}" is not a subscription id (GUID)` });
        return [...new Set(ids.map((id) => id.toLowerCase()))];
      }),
    ROTATOR_OUTCOME_TOPIC_ENDPOINT: httpsUrl.optional(),
    ROTATOR_OUTCOME_TOPIC_KEY: z.string().trim().min(1).optional(),
    ROTATOR_DEFAULT_KEY_VALIDITY_DAYS: intSetting(1, 3650, 90),
    ROTATOR_NEAR_EXPIRY_DAYS: intSetting(1, 365, 30),
    ROTATOR_RETIRE_GRACE_DAYS: intSetting(0, 3650, 7),
    ROTATOR_RETIRE_AFTER_DAYS: intSetting(1, 3650, 0).transform((v) => (v === 0 ? undefined : v)),
    ROTATOR_HUB_CLAIM_SECONDS: intSetting(1, 3600, 120),
    ROTATOR_HUB_RETRY_SECONDS: intSetting(0, 3600, 30),
    ROTATOR_ARM_ENDPOINT: httpsUrl.optional().transform((v) => v ?? 'https://management.azure.com'),
    // GA api-versions have no `encryption` on the IotHub model, and ARM drops what a version does not know: a PUT
    // with one would remove the hub's key. So only preview versions from the first with `encryption` on are taken.
    ROTATOR_IOTHUB_API_VERSION: z
      .string()
      .trim()
      .superRefine((v, ctx) => {
        if (!/^\d{4}-\d{2}-\d{2}-preview$/.test(v)) {
          ctx.addIssue({
            code: 'custom',
            message:
              'must be a preview api-version such as 2025-08-01-preview (GA versions drop the encryption settings)',
          });
        } else if (v < FIRST_API_VERSION_WITH_ENCRYPTION) {
          ctx.addIssue({
            code: 'custom',
            message: `must be ${FIRST_API_VERSION_WITH_ENCRYPTION} or later (earlier versions have no encryption settings)`,
          });
        }
      })
      .optional()
      .transform((v) => v ?? DEFAULT_IOTHUB_API_VERSION),
    ROTATOR_RECONCILE_SCHEDULE: z
      .string()
      .trim()
      .regex(/^\S+(\s+\S+){5}$/, 'must be an NCRONTAB expression with six fields (seconds first), e.g. "0 0 * * * *"')
      .optional(),
    // Read again when the functions are registered (src/hosting/http.ts); validated here so a typo is reported.
    ROTATOR_OPERATOR_AUTH: z
      .enum(['function-key', 'entra-id'], { error: 'must be function-key or entra-id' })
      .optional()
      .default('function-key'),
    AZURE_CLIENT_ID: z.string().trim().min(1).optional(),
    AzureWebJobsStorage: z.string().trim().min(1).optional(),
    AzureWebJobsStorage__accountName: z
      .string()
      .trim()
      .regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name (3-24 lower-case letters and digits)')
      .optional(),
    AzureWebJobsStorage__tableServiceUri: httpsUrl.optional(),
    AzureWebJobsStorage__queueServiceUri: httpsUrl.optional(),
    AzureWebJobsStorage__clientId: z.string().trim().min(1).optional(),
  })
  .superRefine(
    (s, ctx) => {
      // Identity-based access needs the table and queue endpoints: given, or derived from the account name.
      const identityEndpoints =
        s.AzureWebJobsStorage__accountName ||
        (s.AzureWebJobsStorage__tableServiceUri && s.AzureWebJobsStorage__queueServiceUri);
      if (!s.AzureWebJobsStorage && !identityEndpoints) {
        ctx.addIssue({
          code: 'custom',
          path: ['AzureWebJobsStorage'],
          message:
            'is required (a connection string, or UseDevelopmentStorage=true for Azurite), unless AzureWebJobsStorage__accountName (or __tableServiceUri and __queueServiceUri) is set for identity-based access',
        });
      }
      if (s.ROTATOR_OUTCOME_TOPIC_KEY && !s.ROTATOR_OUTCOME_TOPIC_ENDPOINT) {
        ctx.addIssue({
          code: 'custom',
          path: ['ROTATOR_OUTCOME_TOPIC_KEY'],
          message: 'is set but ROTATOR_OUTCOME_TOPIC_ENDPOINT is not: name the topic the key belongs to',
        });
      }
    },
    // Zod skips object refinements once a field has failed; run anyway so one error lists every problem.
    { when: () => true },
  );

export type StorageSettings =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'identity'; tableUrl: string; queueUrl: string; clientId?: string };

export interface Config {
  allowedVaults: string[];
  subscriptionIds: string[];
  outcomeTopic?: { endpoint: string; key?: string };
  defaultKeyValidityDays: number;
  nearExpiryDays: number;
  /** Default grace period of POST /api/keys/retire: a newer usable version must be usable this many days. */
  retireGraceDays: number;
  /** When set, the reconciler retires superseded versions itself, with this grace period (days). */
  retireAfterDays?: number;
  /** How long one step of a hub's move owns the hub; when its instance dies, the hub is taken over after it. */
  hubClaimSeconds: number;
  /** First wait before a hub that failed transiently is tried again (each further wait is four times longer, at most an hour). */
  hubRetrySeconds: number;
  armEndpoint: string;
  iotHubApiVersion: string;
  reconcileSchedule: string;
  /** How operators sign in: a function key, or Entra ID through App Service Authentication. */
  operatorAuth: 'function-key' | 'entra-id';
  managedIdentityClientId?: string;
  storage: StorageSettings;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: NodeJS.ProcessEnv): Config {
  const emptyToUndefined = Object.fromEntries(
    Object.keys(schema.shape).map((k) => [k, env[k] === undefined || env[k]?.trim() === '' ? undefined : env[k]]),
  );
  const parsed = schema.safeParse(emptyToUndefined);
  if (!parsed.success) {
    // zod messages are ours and name the offending value only for non-secret settings.
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || 'settings'}: ${i.message}`));
  }
  const s = parsed.data;
  const account = s.AzureWebJobsStorage__accountName;
  const storage: StorageSettings = s.AzureWebJobsStorage
    ? { kind: 'connectionString', connectionString: s.AzureWebJobsStorage }
    : {
        kind: 'identity',
        tableUrl: s.AzureWebJobsStorage__tableServiceUri ?? `https://${account}.table.core.windows.net`,
        queueUrl: s.AzureWebJobsStorage__queueServiceUri ?? `https://${account}.queue.core.windows.net`,
        ...(s.AzureWebJobsStorage__clientId ? { clientId: s.AzureWebJobsStorage__clientId } : {}),
      };
  return {
    allowedVaults: s.ROTATOR_ALLOWED_VAULTS,
    subscriptionIds: s.ROTATOR_SUBSCRIPTION_IDS,
    ...(s.ROTATOR_OUTCOME_TOPIC_ENDPOINT
      ? {
          outcomeTopic: {
            endpoint: s.ROTATOR_OUTCOME_TOPIC_ENDPOINT,
            ...(s.ROTATOR_OUTCOME_TOPIC_KEY ? { key: s.ROTATOR_OUTCOME_TOPIC_KEY } : {}),
          },
        }
      : {}),
    defaultKeyValidityDays: s.ROTATOR_DEFAULT_KEY_VALIDITY_DAYS,
    nearExpiryDays: s.ROTATOR_NEAR_EXPIRY_DAYS,
    retireGraceDays: s.ROTATOR_RETIRE_GRACE_DAYS,
    ...(s.ROTATOR_RETIRE_AFTER_DAYS !== undefined ? { retireAfterDays: s.ROTATOR_RETIRE_AFTER_DAYS } : {}),
    hubClaimSeconds: s.ROTATOR_HUB_CLAIM_SECONDS,
    hubRetrySeconds: s.ROTATOR_HUB_RETRY_SECONDS,
    armEndpoint: s.ROTATOR_ARM_ENDPOINT,
    iotHubApiVersion: s.ROTATOR_IOTHUB_API_VERSION,
    reconcileSchedule: s.ROTATOR_RECONCILE_SCHEDULE ?? '0 0 * * * *',
    operatorAuth: s.ROTATOR_OPERATOR_AUTH,
    ...(s.AZURE_CLIENT_ID ? { managedIdentityClientId: s.AZURE_CLIENT_ID } : {}),
    storage,
  };
}
