// Checks the Bicep templates by structure (tree-sitter-bicep): syntax, module wiring, the security-relevant
// resource settings, role assignments, app settings against what the app reads, and the azd/hook wiring.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { NOT_SET_IN_AZURE, settingsTheAppReads } from './appSettings';
import type { BicepFile, BicepResource } from './bicep';
import {
  arrayItems,
  keys,
  modules,
  outputNames,
  parameters,
  parseBicepFiles,
  property,
  resources,
  sourceLine,
  stringValue,
  syntaxProblems,
  variable,
} from './bicep';

/** Built-in role definition ids (Azure RBAC built-in roles reference). */
const BUILT_IN_ROLES: Record<string, string> = {
  Reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7',
  'Key Vault Crypto Officer': '14b46e9e-c2b7-41b4-b07b-48a6ebf60603',
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3',
  'Storage Queue Data Message Sender': 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a',
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
  'EventGrid Data Sender': 'd5a91429-5739-47e2-a06b-3470a27159e7',
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb',
};
const CUSTOM_ROLE_COMMENT = '// custom role: CMK Rotator IoT Hub Key Updater';
const KEY_VAULT_EVENTS = [
  'Microsoft.KeyVault.KeyNearExpiry',
  'Microsoft.KeyVault.KeyExpired',
  'Microsoft.KeyVault.KeyNewVersionCreated',
];
/** The outcomes that need a person: failures, and a revocation (hubs have lost their data until a restore). */
const ALERTING_OUTCOMES = [
  'CmkRotator.HubKeyUpdateFailed',
  'CmkRotator.RotationFailed',
  'CmkRotator.VersionUnusable',
  'CmkRotator.KeyRevoked',
];

let files: BicepFile[];
let all: BicepResource[];

beforeAll(async () => {
  files = await parseBicepFiles('infra');
});

function file(relative: string): BicepFile {
  const found = files.find((f) => f.path === relative);
  if (!found) throw new Error(`${relative} is missing`);
  return found;
}

function only(type: string, filter: (r: BicepResource) => boolean = () => true): BicepResource {
  all ??= resources(files);
  const matches = all.filter((r) => r.type === type && !r.existing && filter(r));
  expect(
    matches.map((r) => `${r.file.path}:${r.line}`),
    `exactly one ${type}`,
  ).toHaveLength(1);
  return matches[0]!;
}

const text = (r: BicepResource, dottedPath: string): string | undefined => stringValue(property(r.body, dottedPath));
const raw = (r: BicepResource, dottedPath: string): string | undefined => property(r.body, dottedPath)?.text;
const strings = (r: BicepResource, dottedPath: string): (string | undefined)[] =>
  arrayItems(property(r.body, dottedPath)).map((n) => stringValue(n));

describe('Bicep syntax and wiring', () => {
  it('finds the templates', () => {
    expect(files.map((f) => f.path)).toEqual(
      expect.arrayContaining(['infra/main.bicep', 'infra/key-vault-events.bicep']),
    );
  });

  it('parses every .bicep file without ERROR or MISSING nodes', () => {
    expect(files.flatMap(syntaxProblems)).toEqual([]);
  });

  it('passes every module exactly the parameters it declares and reads only outputs it has', () => {
    const problems: string[] = [];
    for (const mod of modules(files)) {
      const where = `${mod.file.path}:${mod.line} (${mod.symbol})`;
      const target = files.find((f) => f.path === mod.target);
      if (!target) {
        problems.push(`${where}: ${mod.target} does not exist`);
        continue;
      }
      const declared = parameters(target);
      const params = property(mod.body, 'params');
      const passed = params ? keys(params) : [];
      for (const name of passed)
        if (!declared.some((p) => p.name === name)) problems.push(`${where}: ${mod.target} has no parameter ${name}`);
      for (const p of declared)
        if (!p.hasDefault && !passed.includes(p.name))
          problems.push(`${where}: required parameter ${p.name} not passed`);
      const outputs = outputNames(target);
      const uses = mod.file.lines.join('\n').matchAll(new RegExp(`\\b${mod.symbol}\\.outputs\\.(\\w+)`, 'g'));
      for (const [, name] of uses)
        if (!outputs.includes(name!)) problems.push(`${where}: ${mod.target} has no output ${name}`);
    }
    expect(problems).toEqual([]);
  });

  it('keeps main.parameters.json in step with main.bicep and names outputs in UPPER_SNAKE for azd', () => {
    const main = file('infra/main.bicep');
    const declared = parameters(main);
    const json = JSON.parse(readFileSync('infra/main.parameters.json', 'utf8')) as {
      parameters: Record<string, { value: unknown }>;
    };
    const given = Object.keys(json.parameters);
    expect(given.filter((name) => !declared.some((p) => p.name === name))).toEqual([]);
    expect(declared.filter((p) => !p.hasDefault && !given.includes(p.name)).map((p) => p.name)).toEqual([]);
    expect(json.parameters.environmentName?.value).toBe('${AZURE_ENV_NAME}');
    expect(json.parameters.location?.value).toBe('${AZURE_LOCATION}');
    expect(outputNames(main).filter((name) => !/^[A-Z][A-Z0-9_]*$/.test(name))).toEqual([]);
  });
});

describe('resources', () => {
  it('runs the function app on Flex Consumption, Node.js 20, with its user-assigned identity', () => {
    const plan = only('Microsoft.Web/serverfarms');
    expect(text(plan, 'sku.name')).toBe('FC1');
    expect(text(plan, 'sku.tier')).toBe('FlexConsumption');
    expect(raw(plan, 'properties.reserved')).toBe('true');

    const site = only('Microsoft.Web/sites');
    expect(text(site, 'kind')).toBe('functionapp,linux');
    expect(text(site, 'identity.type')).toBe('UserAssigned');
    expect(raw(site, 'properties.httpsOnly')).toBe('true');
    expect(text(site, 'properties.functionAppConfig.runtime.name')).toBe('node');
    expect(text(site, 'properties.functionAppConfig.runtime.version')).toBe('20');
    expect(text(site, 'properties.functionAppConfig.deployment.storage.type')).toBe('blobContainer');
    expect(text(site, 'properties.functionAppConfig.deployment.storage.authentication.type')).toBe(
      'UserAssignedIdentity',
    );
    expect(raw(site, 'tags')).toContain("'azd-service-name': 'rotator'");

    for (const kind of ['scm', 'ftp']) {
      const policy = only('Microsoft.Web/sites/basicPublishingCredentialsPolicies', (r) => text(r, 'name') === kind);
      expect(raw(policy, 'properties.allow')).toBe('false');
    }
  });

  it('reaches storage by identity only', () => {
    const account = only('Microsoft.Storage/storageAccounts');
    expect(raw(account, 'properties.allowSharedKeyAccess')).toBe('false');
    expect(raw(account, 'properties.allowBlobPublicAccess')).toBe('false');
    expect(text(account, 'properties.minimumTlsVersion')).toBe('TLS1_2');
  });

  it('creates a vault with RBAC, soft delete and purge protection, and an example RSA key that notifies before expiry', () => {
    const vault = only('Microsoft.KeyVault/vaults');
    expect(raw(vault, 'properties.enableRbacAuthorization')).toBe('true');
    expect(raw(vault, 'properties.enableSoftDelete')).toBe('true');
    expect(raw(vault, 'properties.enablePurgeProtection')).toBe('true');

    const key = only('Microsoft.KeyVault/vaults/keys');
    expect(text(key, 'properties.kty')).toBe('RSA');
    expect(raw(key, 'properties.attributes.exp')).toMatch(/dateTimeAdd/);
    expect(raw(key, 'properties.rotationPolicy.attributes.expiryTime')).toMatch(/^'P/);
    const actions = arrayItems(property(key.body, 'properties.rotationPolicy.lifetimeActions'));
    const notify = actions.filter((a) => stringValue(property(a, 'action.type')) === 'notify');
    expect(notify).toHaveLength(1);
    expect(property(notify[0], 'trigger.timeBeforeExpiry')?.text).toMatch(/^'P/);
  });

  it('delivers the three Key Vault key events to keyVaultEvents, retrying and then dead-lettering with an identity', () => {
    const topic = only('Microsoft.EventGrid/systemTopics');
    expect(text(topic, 'properties.topicType')).toBe('Microsoft.KeyVault.vaults');
    expect(raw(topic, 'identity.type')).toBe('identityType');
    expect(raw(topic, 'identity.userAssignedIdentities')).toContain('userAssignedIdentityIds');

    const subscription = only('Microsoft.EventGrid/systemTopics/eventSubscriptions');
    expect(subscription.file.path).toBe('infra/key-vault-events.bicep');
    expect(strings(subscription, 'properties.filter.includedEventTypes').sort()).toEqual([...KEY_VAULT_EVENTS].sort());
    expect(Number(raw(subscription, 'properties.retryPolicy.maxDeliveryAttempts'))).toBeGreaterThan(1);
    expect(Number(raw(subscription, 'properties.retryPolicy.eventTimeToLiveInMinutes'))).toBeGreaterThan(0);
    expect(text(subscription, 'properties.deadLetterWithResourceIdentity.identity.type')).toBe('UserAssigned');
    expect(text(subscription, 'properties.deadLetterWithResourceIdentity.deadLetterDestination.endpointType')).toBe(
      'StorageBlob',
    );
    expect(text(subscription, 'properties.destination.endpointType')).toBe('WebHook');
    const url = raw(subscription, 'properties.destination.properties.endpointUrl') ?? '';
    expect(url).toContain('/runtime/webhooks/eventgrid?functionName=${functionName}&code=');
    expect(url).toContain('.systemKeys.eventgrid_extension');
    expect(stringValue(variable(subscription.file, 'functionName'))).toBe('keyVaultEvents');
    expect(readFileSync('functions/keyVaultEvents.ts', 'utf8')).toContain("app.eventGrid('keyVaultEvents'");
  });

  it('accepts outcome events only with Entra ID and alerts on the failure outcomes the app publishes', () => {
    const topic = only('Microsoft.EventGrid/topics');
    expect(raw(topic, 'properties.disableLocalAuth')).toBe('true');
    expect(text(topic, 'properties.inputSchema')).toBe('CloudEventSchemaV1_0');

    const failures = only('Microsoft.EventGrid/topics/eventSubscriptions');
    const routed = strings(failures, 'properties.filter.includedEventTypes');
    expect([...routed].sort()).toEqual([...ALERTING_OUTCOMES].sort());
    const published = readFileSync('src/domain/ports.ts', 'utf8');
    for (const type of ALERTING_OUTCOMES) expect(published).toContain(`'${type}'`);
    expect(text(failures, 'properties.deliveryWithResourceIdentity.destination.endpointType')).toBe('StorageQueue');

    const alert = only('Microsoft.Insights/metricAlerts');
    expect(raw(alert, 'properties.scopes')).toContain('topic.id');
    const [criterion] = arrayItems(property(alert.body, 'properties.criteria.allOf'));
    expect(stringValue(property(criterion, 'metricName'))).toBe('MatchedEventCount');
    expect(property(criterion, 'dimensions')?.text).toContain('failureSubscription.name');
    expect(raw(alert, 'properties.actions')).toContain('actionGroup.id');
    const group = only('Microsoft.Insights/actionGroups');
    expect(raw(group, 'properties.emailReceivers')).toBe('emailReceivers');
    expect(variable(group.file, 'emailReceivers')?.text).toContain('emailAddress: alertEmailAddress');
  });
});

describe('access control', () => {
  it('names every role assignment with guid() and uses the right role ids, each commented with its role', () => {
    all ??= resources(files);
    const assignments = all.filter((r) => r.type === 'Microsoft.Authorization/roleAssignments');
    const problems: string[] = [];
    const granted: string[] = [];
    for (const a of assignments) {
      const where = `${a.file.path}:${a.line} (${a.symbol})`;
      const name = property(a.body, 'name');
      if (name?.type !== 'call_expression' || name.namedChildren[0]?.text !== 'guid')
        problems.push(`${where}: name is not guid(...)`);
      const roleId = property(a.body, 'properties.roleDefinitionId');
      if (!roleId) {
        problems.push(`${where}: no roleDefinitionId`);
        continue;
      }
      const line = sourceLine(a.file, roleId);
      const guid = /'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'/.exec(roleId.text)?.[1];
      if (guid) {
        const role = Object.entries(BUILT_IN_ROLES).find(([, id]) => id === guid)?.[0];
        if (!role) problems.push(`${where}: ${guid} is not a built-in role this template should grant`);
        else if (!line.trimEnd().endsWith(`// ${role}`)) problems.push(`${where}: the comment must name ${role}`);
        else if (!name?.text.includes(guid)) problems.push(`${where}: guid() must include the role id`);
        const scope = property(a.body, 'scope')?.text ?? `(${a.file.path.split('/').pop()})`;
        granted.push(`${role ?? guid} -> ${property(a.body, 'properties.principalId')?.text} on ${scope}`);
      } else if (!line.trimEnd().endsWith(CUSTOM_ROLE_COMMENT)) {
        problems.push(`${where}: a non-built-in role must be the hub key updater and say so`);
      } else {
        granted.push(`custom hub key updater -> ${property(a.body, 'properties.principalId')?.text}`);
      }
    }
    expect(problems).toEqual([]);
    // The whole security model: who gets which role where. Nothing broader (no Contributor, no Owner).
    expect(granted.sort()).toEqual(
      [
        'EventGrid Data Sender -> functionPrincipalId on topic',
        'Key Vault Crypto Officer -> functionPrincipalId on vault',
        'Monitoring Metrics Publisher -> functionPrincipalId on applicationInsights',
        'Reader -> principalId on (hub-subscription-access.bicep)',
        'Storage Blob Data Contributor -> eventGridPrincipalId on deadLetterContainer',
        'Storage Blob Data Owner -> functionPrincipalId on account',
        'Storage Queue Data Message Sender -> eventGridPrincipalId on failedOutcomesQueue',
        'Storage Queue Data Contributor -> functionPrincipalId on account',
        'Storage Table Data Contributor -> functionPrincipalId on account',
        'custom hub key updater -> principalId',
        'custom hub key updater -> principalId',
      ].sort(),
    );
  });

  it('limits the custom role to reading and writing IoT hubs', () => {
    const role = only('Microsoft.Authorization/roleDefinitions');
    expect(raw(role, 'name')).toMatch(/^guid\(/);
    expect(text(role, 'properties.type')).toBe('CustomRole');
    const [permissions, ...more] = arrayItems(property(role.body, 'properties.permissions'));
    expect(more).toEqual([]);
    expect(keys(permissions!).sort()).toEqual(['actions', 'notActions']);
    expect(arrayItems(property(permissions, 'actions')).map((n) => stringValue(n))).toEqual([
      'Microsoft.Devices/IotHubs/read',
      'Microsoft.Devices/IotHubs/write',
      'Microsoft.Devices/locations/operationresults/read',
      // Linked access check on the hub's user-assigned identities, which every PUT of a CMK hub names.
      'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action',
    ]);
    expect(arrayItems(property(permissions, 'notActions'))).toEqual([]);
    expect(raw(role, 'properties.assignableScopes')).toContain('hubSubscriptionList(hubSubscriptionIds');
  });
});

describe('app settings', () => {
  it('sets every setting the app needs in Azure, and none it does not read', () => {
    const appSettings = only('Microsoft.Web/sites/config', (r) => text(r, 'name') === 'appsettings');
    const settingsObject = property(appSettings.body, 'properties');
    expect(settingsObject?.type).toBe('object');
    const set = keys(settingsObject!);
    const { read, required } = settingsTheAppReads();

    expect(read.has('ROTATOR_ALLOWED_VAULTS')).toBe(true);
    const missing = [...read].filter((name) => !set.includes(name) && !(name in NOT_SET_IN_AZURE));
    expect(missing, 'read by the app but not set by the template').toEqual([]);
    const setAnyway = Object.keys(NOT_SET_IN_AZURE).filter((name) => set.includes(name));
    expect(setAnyway, 'set although the template must leave them unset').toEqual([]);
    expect(required.filter((name) => !set.includes(name) && !(name in NOT_SET_IN_AZURE))).toEqual([]);
    const unknown = set.filter((name) => name.startsWith('ROTATOR_') && !read.has(name));
    expect(unknown, 'ROTATOR_ settings the app never reads').toEqual([]);

    // Host-level settings for identity-based storage and telemetry.
    expect(text(appSettings, 'properties.AzureWebJobsStorage__credential')).toBe('managedidentity');
    expect(set).toEqual(
      expect.arrayContaining([
        'AzureWebJobsStorage__accountName',
        'AzureWebJobsStorage__blobServiceUri',
        'AzureWebJobsStorage__queueServiceUri',
        'AzureWebJobsStorage__tableServiceUri',
        'AzureWebJobsStorage__clientId',
        'AZURE_CLIENT_ID',
        'APPLICATIONINSIGHTS_CONNECTION_STRING',
        'APPLICATIONINSIGHTS_AUTHENTICATION_STRING',
      ]),
    );
    expect(raw(appSettings, 'properties.APPLICATIONINSIGHTS_AUTHENTICATION_STRING')).toContain('Authorization=AAD');
  });
});

describe('azd', () => {
  it('deploys the packaged app folder and runs the second stage after deploy', () => {
    const azureYaml = readFileSync('azure.yaml', 'utf8');
    expect(azureYaml).toMatch(/^\s+host: function$/m);
    expect(azureYaml).toMatch(/^\s+dist: dist\/app$/m);
    expect(readFileSync('scripts/package.mjs', 'utf8')).toContain("path.join(root, 'dist/app')");
    expect(azureYaml).toMatch(/postdeploy:\n\s+posix:\n\s+shell: sh\n\s+run: \.\/infra\/hooks\/postdeploy\.sh/);
    expect(azureYaml).toMatch(/windows:\n\s+shell: pwsh\n\s+run: \.\/infra\/hooks\/postdeploy\.ps1/);
    expect(existsSync('infra/hooks/postdeploy.ps1')).toBe(true);
  });

  describe('postdeploy hook', () => {
    const hookEnv = (fakeAzDir: string): NodeJS.ProcessEnv => ({
      PATH: `${fakeAzDir}${path.delimiter}${process.env.PATH ?? ''}`,
      AZURE_SUBSCRIPTION_ID: '11111111-1111-1111-1111-111111111111',
      AZURE_RESOURCE_GROUP: 'rg-dev',
      AZURE_FUNCTION_APP_NAME: 'func-abc',
      AZURE_FUNCTION_APP_ID: '/subscriptions/1111/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-abc',
      KEY_VAULT_SYSTEM_TOPIC_SUBSCRIPTION_ID: '22222222-2222-2222-2222-222222222222',
      KEY_VAULT_SYSTEM_TOPIC_RESOURCE_GROUP: 'rg-topic',
      KEY_VAULT_SYSTEM_TOPIC_NAME: 'evgs-kv',
      EVENT_GRID_IDENTITY_ID:
        '/subscriptions/1111/resourceGroups/rg-dev/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-evgt',
      DEAD_LETTER_STORAGE_ACCOUNT_ID:
        '/subscriptions/1111/resourceGroups/rg-dev/providers/Microsoft.Storage/storageAccounts/stabc',
      DEAD_LETTER_CONTAINER_NAME: 'eventgrid-dead-letters',
    });

    function withFakeAz(run: (dir: string, callsFile: string) => void): void {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'fake-az-'));
      const callsFile = path.join(dir, 'calls');
      // Records each call's arguments (one per line) and answers the key query with "true".
      writeFileSync(
        path.join(dir, 'az'),
        `#!/bin/sh\nprintf '%s\\n' "$@" >> "${callsFile}"\necho "----" >> "${callsFile}"\n` +
          `if [ "$1" = functionapp ]; then echo true; fi\n`,
      );
      chmodSync(path.join(dir, 'az'), 0o755);
      try {
        run(dir, callsFile);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }

    it('uses only outputs that main.bicep provides', () => {
      const hook = readFileSync('infra/hooks/postdeploy.sh', 'utf8');
      const provided = [...outputNames(file('infra/main.bicep')), 'AZURE_SUBSCRIPTION_ID'];
      const used = [...new Set([...hook.matchAll(/\$\{?([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]!))];
      expect(used.filter((name) => !provided.includes(name))).toEqual([]);
    });

    it('waits for the eventgrid_extension key, then deploys key-vault-events.bicep into the topic resource group', () => {
      withFakeAz((dir, callsFile) => {
        execFileSync('sh', ['infra/hooks/postdeploy.sh'], { env: hookEnv(dir), stdio: 'pipe' });
        const [keyQuery, deployment] = readFileSync(callsFile, 'utf8')
          .split('----\n')
          .filter(Boolean)
          .map((call) => call.trimEnd().split('\n'));
        expect(keyQuery).toEqual([
          'functionapp',
          'keys',
          'list',
          '--subscription',
          '11111111-1111-1111-1111-111111111111',
          '--resource-group',
          'rg-dev',
          '--name',
          'func-abc',
          '--query',
          'systemKeys.eventgrid_extension != `null`',
          '--output',
          'json',
        ]);
        expect(deployment!.slice(0, 3)).toEqual(['deployment', 'group', 'create']);
        const option = (flag: string): string | undefined => deployment![deployment!.indexOf(flag) + 1];
        expect(option('--subscription')).toBe('22222222-2222-2222-2222-222222222222');
        expect(option('--resource-group')).toBe('rg-topic');
        expect(path.resolve(option('--template-file')!)).toBe(path.resolve('infra/key-vault-events.bicep'));
        const start = deployment!.indexOf('--parameters') + 1;
        const passed = deployment!.slice(start, deployment!.indexOf('--output'));
        const declared = parameters(file('infra/key-vault-events.bicep')).map((p) => p.name);
        expect(passed.map((p) => p.split('=')[0]).sort()).toEqual([...declared].sort());
        expect(passed).toContain(
          'functionAppResourceId=/subscriptions/1111/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-abc',
        );
      });
    });

    it('stops with a clear message when the environment has not been provisioned', () => {
      withFakeAz((dir, callsFile) => {
        const env = hookEnv(dir);
        delete env.AZURE_FUNCTION_APP_ID;
        const result = spawnSync('sh', ['infra/hooks/postdeploy.sh'], { env, encoding: 'utf8' });
        expect(result.status).toBe(1);
        expect(result.stderr).toContain("AZURE_FUNCTION_APP_ID is not set; run 'azd provision'");
        expect(existsSync(callsFile)).toBe(false);
      });
    });
  });
});
