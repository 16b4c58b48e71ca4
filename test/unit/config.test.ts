import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config';

const TOPIC_KEY = 'c2VjcmV0LXRvcGljLWtleS12YWx1ZS0xMjM0NTY3ODkw';
const ACCOUNT_KEY = 'QWNjb3VudEtleVNlY3JldFZhbHVlPT09PT09PT09PT09';
const STORAGE = `DefaultEndpointsProtocol=https;AccountName=cmkrotator;AccountKey=${ACCOUNT_KEY};EndpointSuffix=core.windows.net`;
const SUB_A = '91d12660-3dec-467a-be2a-213b5544ddc0';
const SUB_B = '0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0';

const MINIMAL = {
  ROTATOR_ALLOWED_VAULTS: 'https://contoso.vault.azure.net',
  ROTATOR_SUBSCRIPTION_IDS: SUB_A,
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
};

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('reads a full, valid set of settings', () => {
    const config = loadConfig({
      ROTATOR_ALLOWED_VAULTS: ' https://Contoso.Vault.Azure.Net/ , https://fabrikam.vault.azure.net ,',
      ROTATOR_SUBSCRIPTION_IDS: `${SUB_A},${SUB_B}, ${SUB_A.toUpperCase()}`,
      ROTATOR_OUTCOME_TOPIC_ENDPOINT: 'https://outcomes.westeurope-1.eventgrid.azure.net/api/events/',
      ROTATOR_OUTCOME_TOPIC_KEY: TOPIC_KEY,
      ROTATOR_DEFAULT_KEY_VALIDITY_DAYS: ' 180 ',
      ROTATOR_NEAR_EXPIRY_DAYS: '14',
      ROTATOR_RETIRE_GRACE_DAYS: '0',
      ROTATOR_RETIRE_AFTER_DAYS: '30',
      ROTATOR_HUB_CLAIM_SECONDS: '300',
      ROTATOR_HUB_RETRY_SECONDS: '0',
      ROTATOR_ARM_ENDPOINT: 'https://management.usgovcloudapi.net/',
      ROTATOR_IOTHUB_API_VERSION: ' 2023-06-30-preview ',
      ROTATOR_RECONCILE_SCHEDULE: '0 */30 * * * *',
      ROTATOR_OPERATOR_AUTH: 'entra-id',
      AZURE_CLIENT_ID: '00000000-0000-0000-0000-0000000000cc',
      AzureWebJobsStorage: STORAGE,
      UNRELATED_SETTING: 'ignored',
    });
    expect(config).toEqual({
      allowedVaults: ['https://contoso.vault.azure.net', 'https://fabrikam.vault.azure.net'],
      subscriptionIds: [SUB_A, SUB_B.toLowerCase()],
      outcomeTopic: { endpoint: 'https://outcomes.westeurope-1.eventgrid.azure.net/api/events', key: TOPIC_KEY },
      defaultKeyValidityDays: 180,
      nearExpiryDays: 14,
      retireGraceDays: 0,
      retireAfterDays: 30,
      hubClaimSeconds: 300,
      hubRetrySeconds: 0,
      armEndpoint: 'https://management.usgovcloudapi.net',
      iotHubApiVersion: '2023-06-30-preview',
      reconcileSchedule: '0 */30 * * * *',
      operatorAuth: 'entra-id',
      managedIdentityClientId: '00000000-0000-0000-0000-0000000000cc',
      storage: { kind: 'connectionString', connectionString: STORAGE },
    });
  });

  it('applies defaults for everything optional, treating blank values as unset', () => {
    expect(
      loadConfig({
        ...MINIMAL,
        ROTATOR_HUB_CLAIM_SECONDS: '  ',
        ROTATOR_IOTHUB_API_VERSION: '',
        ROTATOR_OUTCOME_TOPIC_ENDPOINT: '',
        AZURE_CLIENT_ID: '',
      }),
    ).toEqual({
      allowedVaults: ['https://contoso.vault.azure.net'],
      subscriptionIds: [SUB_A],
      defaultKeyValidityDays: 90,
      nearExpiryDays: 30,
      retireGraceDays: 7,
      hubClaimSeconds: 120,
      hubRetrySeconds: 30,
      armEndpoint: 'https://management.azure.com',
      iotHubApiVersion: '2025-08-01-preview',
      reconcileSchedule: '0 0 * * * *',
      operatorAuth: 'function-key',
      storage: { kind: 'connectionString', connectionString: 'UseDevelopmentStorage=true' },
    });
  });

  it('uses the topic with its identity when no key is given', () => {
    expect(
      loadConfig({
        ...MINIMAL,
        ROTATOR_OUTCOME_TOPIC_ENDPOINT: 'https://t.westeurope-1.eventgrid.azure.net/api/events',
      }).outcomeTopic,
    ).toEqual({ endpoint: 'https://t.westeurope-1.eventgrid.azure.net/api/events' });
  });

  it('reports every problem in one error, naming each setting', () => {
    const error = configError({
      ROTATOR_SUBSCRIPTION_IDS: `${SUB_A},not-a-guid`,
      ROTATOR_DEFAULT_KEY_VALIDITY_DAYS: 'ninety',
      ROTATOR_HUB_CLAIM_SECONDS: '0',
      ROTATOR_ARM_ENDPOINT: 'http://management.azure.com',
      ROTATOR_OPERATOR_AUTH: 'entra',
    });
    const settings = error.problems.map((p) => p.split(':')[0]);
    expect(settings.sort()).toEqual(
      [
        'AzureWebJobsStorage',
        'ROTATOR_ALLOWED_VAULTS',
        'ROTATOR_ARM_ENDPOINT',
        'ROTATOR_DEFAULT_KEY_VALIDITY_DAYS',
        'ROTATOR_HUB_CLAIM_SECONDS',
        'ROTATOR_OPERATOR_AUTH',
        'ROTATOR_SUBSCRIPTION_IDS',
      ].sort(),
    );
    expect(error.message).toContain('"not-a-guid" is not a subscription id');
    expect(error.message).toContain('must be a whole number from 1 to 3650 (got "ninety")');
    expect(error.message).toContain('ROTATOR_HUB_CLAIM_SECONDS: must be a whole number from 1 to 3600');
    expect(error.message).toContain('(got "0")');
    expect(error.message).toContain('ROTATOR_OPERATOR_AUTH: must be function-key or entra-id');
    for (const problem of error.problems) expect(error.message).toContain(problem);
  });

  it('rejects bad vault URLs, one problem each', () => {
    const error = configError({
      ...MINIMAL,
      ROTATOR_ALLOWED_VAULTS:
        'https://contoso.vault.azure.net,http://insecure.vault.azure.net,https://x.vault.azure.net/keys/k',
    });
    expect(error.problems).toHaveLength(2);
    expect(error.message).toContain('"http://insecure.vault.azure.net" is not a vault URL');
    expect(error.message).toContain('"https://x.vault.azure.net/keys/k" is not a vault URL');
  });

  it.each([
    ['ROTATOR_ALLOWED_VAULTS', ' , '],
    ['ROTATOR_SUBSCRIPTION_IDS', ','],
  ])('rejects a %s that names nothing', (setting, value) => {
    expect(configError({ ...MINIMAL, [setting]: value }).problems).toEqual([
      expect.stringMatching(new RegExp(`^${setting}: must name at least one`)),
    ]);
  });

  it('rejects retirement settings out of range, naming each (automatic retirement needs at least one day)', () => {
    const error = configError({ ...MINIMAL, ROTATOR_RETIRE_GRACE_DAYS: '-1', ROTATOR_RETIRE_AFTER_DAYS: '0' });
    expect(error.problems).toEqual([
      'ROTATOR_RETIRE_GRACE_DAYS: must be a whole number from 0 to 3650 (got "-1")',
      'ROTATOR_RETIRE_AFTER_DAYS: must be a whole number from 1 to 3650 (got "0")',
    ]);
  });

  it.each(['1.5', '3651', '-1', 'abc'])('rejects ROTATOR_DEFAULT_KEY_VALIDITY_DAYS=%s', (value) => {
    expect(configError({ ...MINIMAL, ROTATOR_DEFAULT_KEY_VALIDITY_DAYS: value }).problems).toHaveLength(1);
  });

  it('uses identity-based storage (tables and queues) from the account name', () => {
    const config = loadConfig({
      ROTATOR_ALLOWED_VAULTS: MINIMAL.ROTATOR_ALLOWED_VAULTS,
      ROTATOR_SUBSCRIPTION_IDS: SUB_A,
      AzureWebJobsStorage__accountName: 'cmkrotator',
      AzureWebJobsStorage__clientId: '00000000-0000-0000-0000-0000000000dd',
    });
    expect(config.storage).toEqual({
      kind: 'identity',
      tableUrl: 'https://cmkrotator.table.core.windows.net',
      queueUrl: 'https://cmkrotator.queue.core.windows.net',
      clientId: '00000000-0000-0000-0000-0000000000dd',
    });
  });

  it('uses identity-based storage from explicit table and queue service URIs', () => {
    const config = loadConfig({
      ROTATOR_ALLOWED_VAULTS: MINIMAL.ROTATOR_ALLOWED_VAULTS,
      ROTATOR_SUBSCRIPTION_IDS: SUB_A,
      AzureWebJobsStorage__tableServiceUri: 'https://cmk.table.core.usgovcloudapi.net/',
      AzureWebJobsStorage__queueServiceUri: 'https://cmk.queue.core.usgovcloudapi.net/',
    });
    expect(config.storage).toEqual({
      kind: 'identity',
      tableUrl: 'https://cmk.table.core.usgovcloudapi.net',
      queueUrl: 'https://cmk.queue.core.usgovcloudapi.net',
    });
  });

  it.each([
    ['no endpoint at all', { AzureWebJobsStorage__clientId: '00000000-0000-0000-0000-0000000000dd' }],
    ['only the table endpoint', { AzureWebJobsStorage__tableServiceUri: 'https://cmk.table.core.windows.net' }],
    ['only the queue endpoint', { AzureWebJobsStorage__queueServiceUri: 'https://cmk.queue.core.windows.net' }],
  ])('refuses identity-based storage with %s', (_what, settings) => {
    const error = configError({
      ROTATOR_ALLOWED_VAULTS: MINIMAL.ROTATOR_ALLOWED_VAULTS,
      ROTATOR_SUBSCRIPTION_IDS: SUB_A,
      ...settings,
    });
    expect(error.problems).toEqual([expect.stringMatching(/^AzureWebJobsStorage: is required.*__queueServiceUri/)]);
  });

  it('refuses a queue service URI that is not https', () => {
    const error = configError({
      ...MINIMAL,
      AzureWebJobsStorage__queueServiceUri: 'http://cmk.queue.core.windows.net',
    });
    expect(error.problems).toEqual([
      expect.stringMatching(/^AzureWebJobsStorage__queueServiceUri: must be an https URL/),
    ]);
  });

  it('ignores the retired ROTATOR_HUB_CONCURRENCY (hub steps are scaled by the platform now)', () => {
    const config = loadConfig({ ...MINIMAL, ROTATOR_HUB_CONCURRENCY: '0' });
    expect(config).not.toHaveProperty('hubConcurrency');
  });

  it.each(['2023-06-30-preview', '2025-08-01-preview', '2030-01-01-preview'])(
    'takes ROTATOR_IOTHUB_API_VERSION=%s (a preview with encryption settings)',
    (version) => {
      expect(loadConfig({ ...MINIMAL, ROTATOR_IOTHUB_API_VERSION: version }).iotHubApiVersion).toBe(version);
    },
  );

  it.each([
    ['2023-06-30', /must be a preview api-version/],
    ['2025-08-01', /must be a preview api-version/],
    ['2022-04-30-preview', /must be 2023-06-30-preview or later/],
    ['latest', /must be a preview api-version/],
  ])('refuses ROTATOR_IOTHUB_API_VERSION=%s (a PUT with it would drop the hub’s key settings)', (version, why) => {
    const error = configError({ ...MINIMAL, ROTATOR_IOTHUB_API_VERSION: version });
    expect(error.problems.length).toBeGreaterThan(0);
    for (const problem of error.problems) expect(problem).toMatch(/^ROTATOR_IOTHUB_API_VERSION: /);
    expect(error.problems[0]).toMatch(why);
  });

  it('refuses a topic key without a topic endpoint, without echoing the key', () => {
    const error = configError({ ...MINIMAL, ROTATOR_OUTCOME_TOPIC_KEY: TOPIC_KEY });
    expect(error.problems).toEqual([
      expect.stringMatching(/^ROTATOR_OUTCOME_TOPIC_KEY: is set but ROTATOR_OUTCOME_TOPIC_ENDPOINT/),
    ]);
    expect(error.message).not.toContain(TOPIC_KEY);
  });

  it('rejects a malformed storage account name', () => {
    const error = configError({
      ...MINIMAL,
      AzureWebJobsStorage: undefined,
      AzureWebJobsStorage__accountName: 'Bad_Name',
    });
    expect(error.problems).toEqual([expect.stringMatching(/^AzureWebJobsStorage__accountName: /)]);
  });

  it('never echoes secrets, even when other settings are wrong', () => {
    const error = configError({
      ROTATOR_ALLOWED_VAULTS: 'http://contoso.vault.azure.net',
      ROTATOR_SUBSCRIPTION_IDS: 'nope',
      ROTATOR_HUB_CLAIM_SECONDS: '100000',
      ROTATOR_OUTCOME_TOPIC_ENDPOINT: 'not a url',
      ROTATOR_OUTCOME_TOPIC_KEY: TOPIC_KEY,
      AzureWebJobsStorage: STORAGE,
    });
    expect(error.problems.length).toBeGreaterThanOrEqual(4);
    for (const text of [error.message, String(error.stack), JSON.stringify(error.problems)]) {
      expect(text).not.toContain(TOPIC_KEY);
      expect(text).not.toContain(ACCOUNT_KEY);
    }
  });
});
