// Checks the compiled templates (infra/main.json, infra/key-vault-events.json: what ARM receives) against what the
// app reads, the access it needs, and what azd and the hooks expect. compiledCurrent.test.ts keeps them current.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ArmParameter, ArmTemplate, Placed } from './arm';
import { allResources, contextOf, findModule, inputsOf, loadTemplate, modulePath, trace } from './arm';
import { NOT_SET_IN_AZURE, settingsTheAppReads } from './appSettings';

const ROLES: Record<string, string> = {
  'acdd72a7-3385-48ef-bd42-f606fba81ae7': 'Reader',
  '14b46e9e-c2b7-41b4-b07b-48a6ebf60603': 'Key Vault Crypto Officer',
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b': 'Storage Blob Data Owner',
  'ba92f5b4-2d11-453d-a403-e96b0029c9fe': 'Storage Blob Data Contributor',
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3': 'Storage Table Data Contributor',
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88': 'Storage Queue Data Contributor',
  'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a': 'Storage Queue Data Message Sender',
  'd5a91429-5739-47e2-a06b-3470a27159e7': 'EventGrid Data Sender',
  '3913510d-42f4-4e42-8a64-420c390055eb': 'Monitoring Metrics Publisher',
};

const source = (file: string): string => readFileSync(file, 'utf8');

/**
 * Why each principal holds each role: what in the code (or the host, or Event Grid) needs it. Each entry's evidence
 * must still be true, so a role stays only while something uses it.
 */
const NEEDED: { grant: string; why: string; evidence: () => boolean }[] = [
  {
    grant: 'function: Key Vault Crypto Officer on the vault',
    why: 'creates key versions and reads rotation policies',
    evidence: () => /createRsaKey\(/.test(source('src/adapters/keyVault.ts')),
  },
  {
    grant: 'function: Reader on each hub subscription',
    why: 'lists the hubs of each subscription',
    evidence: () => source('src/adapters/iotHubs.ts').includes('/providers/Microsoft.Devices/IotHubs`'),
  },
  {
    grant: 'function: CMK Rotator IoT Hub Key Updater on each hub scope',
    why: 'writes a hub back with the new key version',
    evidence: () => /this\.send\('PUT'/.test(source('src/adapters/iotHubs.ts')),
  },
  {
    grant: 'function: Storage Table Data Contributor on the storage account',
    why: 'audit, jobs and lease tables',
    evidence: () => source('src/adapters/tables.ts').includes('@azure/data-tables'),
  },
  {
    grant: 'function: Storage Blob Data Owner on the storage account',
    why: 'the host (identity-based AzureWebJobsStorage) and the Flex deployment package',
    evidence: () => true,
  },
  {
    grant: 'function: Storage Queue Data Contributor on the storage account',
    why: 'the hub-steps queue and its poison queue',
    evidence: () => true,
  },
  {
    grant: 'function: EventGrid Data Sender on the outcome topic',
    why: 'publishes outcome events with its identity',
    evidence: () => source('src/adapters/outcomes.ts').includes('EventGridPublisherClient'),
  },
  {
    grant: 'function: Monitoring Metrics Publisher on Application Insights',
    why: 'telemetry ingestion with Entra ID (local auth is off)',
    evidence: () => true,
  },
  {
    grant: 'eventGrid: Storage Blob Data Contributor on the dead-letter container',
    why: 'dead-letters undeliverable Key Vault events',
    evidence: () => true,
  },
  {
    grant: 'eventGrid: Storage Queue Data Message Sender on the failed-outcomes queue',
    why: 'delivers failure outcomes to the queue the alert points at',
    evidence: () => true,
  },
];

/** Names a principal expression after the identity it traces to. */
function principalName(traced: string): string {
  if (/outputs\.functionPrincipalId|'id-func-/.test(traced) || traced.includes('functionIdentity')) return 'function';
  if (/outputs\.eventGridPrincipalId|'id-evgt-/.test(traced) || traced.includes('eventGridIdentity'))
    return 'eventGrid';
  return `unknown (${traced.slice(0, 80)})`;
}

/** Names a role assignment's scope by the resource it is placed on. */
function scopeName(placed: Placed): string {
  const scope = placed.resource.scope ?? '';
  const where = modulePath(placed).at(-1) ?? '(top)';
  if (scope.includes('Microsoft.KeyVault/vaults')) return 'the vault';
  if (scope.includes('blobServices/containers')) return 'the dead-letter container';
  if (scope.includes('queueServices/queues')) return 'the failed-outcomes queue';
  if (scope.includes('Microsoft.Storage/storageAccounts')) return 'the storage account';
  if (scope.includes('Microsoft.EventGrid/topics')) return 'the outcome topic';
  if (scope.includes('Microsoft.Insights/components')) return 'Application Insights';
  if (where.startsWith('hubSubscriptionAccess')) return 'each hub subscription';
  if (where.startsWith('hubResourceGroupAccess')) return 'each hub scope';
  return `${where}:${scope}`;
}

let main: ArmTemplate;
let events: ArmTemplate;
let placed: Placed[];

beforeAll(() => {
  main = loadTemplate('infra/main.json');
  events = loadTemplate('infra/key-vault-events.json');
  placed = allResources(main);
});

const ofType = (type: string): Placed[] => placed.filter((p) => p.resource.type === type && !p.resource.existing);
function module(label: string, template: ArmTemplate = main): Placed {
  const found = findModule(template, label);
  if (!found) throw new Error(`no module ${label}`);
  return found;
}

const siteConfig = (name: 'appsettings' | 'authsettingsV2'): Placed[] =>
  ofType('Microsoft.Web/sites/config').filter((p) => JSON.stringify(p.resource.name).includes(`'${name}'`));
function appSettings(): Record<string, unknown> {
  const [config, ...more] = siteConfig('appsettings');
  expect(more).toEqual([]);
  return config!.resource.properties as Record<string, unknown>;
}
function tracedSetting(name: string): string {
  const [config] = siteConfig('appsettings');
  return trace(appSettings()[name], contextOf(config!));
}

describe('app settings (compiled)', () => {
  it('sets every setting the app reads, except the ones left unset on purpose, and no ROTATOR_ setting it does not read', () => {
    const set = Object.keys(appSettings());
    const { read, required } = settingsTheAppReads();
    expect(read.has('ROTATOR_ALLOWED_VAULTS')).toBe(true);
    expect([...read].filter((name) => !set.includes(name) && !(name in NOT_SET_IN_AZURE))).toEqual([]);
    expect(Object.keys(NOT_SET_IN_AZURE).filter((name) => set.includes(name))).toEqual([]);
    expect(required.filter((name) => !set.includes(name) && !(name in NOT_SET_IN_AZURE))).toEqual([]);
    expect(set.filter((name) => name.startsWith('ROTATOR_') && !read.has(name))).toEqual([]);
  });

  it("reaches storage by identity at the account's own endpoints, which are right in every cloud", () => {
    expect(tracedSetting('AzureWebJobsStorage__credential')).toBe('"managedidentity"');
    // The function identity's client id, read from the identity itself.
    expect(tracedSetting('AzureWebJobsStorage__clientId')).toMatch(/format\('id-func-\{0\}'.*\)\.clientId/);
    for (const service of ['blob', 'queue', 'table']) {
      const traced = tracedSetting(`AzureWebJobsStorage__${service}ServiceUri`);
      // The storage module's output reads the account itself: reference('account').primaryEndpoints.<service>.
      expect(traced).toMatch(new RegExp(`reference\\('account'\\)\\.primaryEndpoints\\.${service}\\b`));
      expect(traced).not.toContain('core.windows.net');
    }
    const everySetting = Object.keys(appSettings()).map(tracedSetting).join('\n');
    expect(everySetting).not.toMatch(/listKeys|AccountKey=|SharedAccessSignature/);
  });

  it("takes ARM's and Key Vault's endpoints from the cloud it is deployed to", () => {
    expect(tracedSetting('ROTATOR_ARM_ENDPOINT')).toBe('environment().resourceManager');
    expect(tracedSetting('ROTATOR_ALLOWED_VAULTS')).toContain('environment().suffixes.keyvaultDns');
  });

  it('gives the app the near-expiry days only through the notify < validity guard', () => {
    const guard = main.variables?.nearExpiryDays as string;
    expect(guard).toMatch(
      /^\[if\(less\(parameters\('notifyDaysBeforeExpiry'\), parameters\('keyValidityDays'\)\), parameters\('notifyDaysBeforeExpiry'\), createObject\(\)\[format\('notifyDaysBeforeExpiry \(\{0\}\) must be less than keyValidityDays/,
    );
    // The raw parameter is read nowhere else in main.json (modules get the guarded value), so no path skips the check.
    const topLevel = placed.filter((p) => !p.parent).map((p): unknown => p.resource.properties?.parameters ?? {});
    const elsewhere = JSON.stringify([topLevel, main.outputs, { ...main.variables, nearExpiryDays: null }]);
    expect(elsewhere).not.toContain("parameters('notifyDaysBeforeExpiry')");
    expect(elsewhere).toContain("variables('nearExpiryDays')");
    expect(tracedSetting('ROTATOR_NEAR_EXPIRY_DAYS')).toContain('must be less than keyValidityDays');
    const key = ofType('Microsoft.KeyVault/vaults/keys')[0]!;
    const notify = trace(
      key.resource.properties.rotationPolicy.lifetimeActions[0].trigger.timeBeforeExpiry,
      contextOf(key),
    );
    expect(notify).toContain('must be less than keyValidityDays');
  });
});

describe('operator sign-in (compiled)', () => {
  it('puts App Service Authentication in front only with a client id, and tells the app to expect its principal', () => {
    const [auth, ...more] = siteConfig('authsettingsV2');
    expect(more).toEqual([]);
    expect(auth!.resource.condition).toBeDefined();
    expect(trace(auth!.resource.condition, contextOf(auth!))).toContain("parameters('operatorSignInClientId')");
    expect(tracedSetting('ROTATOR_OPERATOR_AUTH')).toMatch(/'entra-id'.*'function-key'/);
    const settings = auth!.resource.properties;
    expect(settings.globalValidation).toMatchObject({
      requireAuthentication: true,
      unauthenticatedClientAction: 'RedirectToLoginPage',
    });
    // Health stays anonymous, and Event Grid cannot sign in: its webhook is guarded by the extension's system key.
    expect(settings.globalValidation.excludedPaths).toEqual(['/api/health', '/runtime/webhooks/eventgrid']);
    expect(
      trace(settings.identityProviders.azureActiveDirectory.registration.openIdIssuer, contextOf(auth!)),
    ).toContain('environment().authentication.loginEndpoint');
  });
});

describe('access (compiled)', () => {
  it('grants exactly the roles something needs, to the identity that needs them, where it needs them', () => {
    for (const need of NEEDED) expect(need.evidence(), `${need.grant}: ${need.why}`).toBe(true);
    const granted = ofType('Microsoft.Authorization/roleAssignments').map((p) => {
      const roleId = trace(p.resource.properties.roleDefinitionId, contextOf(p));
      const builtIn = Object.entries(ROLES).find(([id]) => roleId.includes(`'${id}'`))?.[1];
      const custom = roleId.includes("'cmk-rotator-iot-hub-key-updater'");
      const role = builtIn ?? (custom ? 'CMK Rotator IoT Hub Key Updater' : roleId);
      return `${principalName(trace(p.resource.properties.principalId, contextOf(p)))}: ${role} on ${scopeName(p)}`;
    });
    const hubRole = granted.filter((g) => g.includes('Key Updater'));
    expect(hubRole.sort()).toEqual([
      'function: CMK Rotator IoT Hub Key Updater on each hub scope',
      'function: CMK Rotator IoT Hub Key Updater on each hub subscription',
    ]);
    const normalized = granted.map((g) =>
      g === 'function: CMK Rotator IoT Hub Key Updater on each hub subscription'
        ? 'function: CMK Rotator IoT Hub Key Updater on each hub scope'
        : g,
    );
    expect([...new Set(normalized)].sort()).toEqual(NEEDED.map((n) => n.grant).sort());
    for (const p of ofType('Microsoft.Authorization/roleAssignments'))
      expect(p.resource.properties.principalType).toBe('ServicePrincipal');
  });

  it('limits the custom role to reading and writing hubs, named after everything that makes it unique', () => {
    const [role, ...more] = ofType('Microsoft.Authorization/roleDefinitions');
    expect(more).toEqual([]);
    const { properties } = role!.resource;
    expect(properties.permissions).toEqual([
      {
        actions: [
          'Microsoft.Devices/IotHubs/read',
          'Microsoft.Devices/IotHubs/write',
          'Microsoft.Devices/locations/operationresults/read',
          // Linked access check on the hub's user-assigned identities, which every PUT of a CMK hub names.
          'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action',
        ],
        notActions: [],
      },
    ]);
    // The GUID must change whenever the role name does (subscription, environment, region): otherwise a second
    // environment rewrites the first one's role.
    const nameInputs = inputsOf(role!.resource.name, role!.template);
    const roleNameInputs = inputsOf(properties.roleName, role!.template);
    expect([...roleNameInputs].filter((input) => !nameInputs.has(input))).toEqual([]);
    expect([...nameInputs].sort()).toEqual(['parameters.environmentName', 'parameters.location', 'subscription()']);
  });

  it('assigns the custom role only after the role module and the function app, so a fresh role has time to spread', () => {
    for (const label of ['hubSubscriptionAccess', 'hubResourceGroupAccess']) {
      const dependsOn = module(label).resource.dependsOn ?? [];
      expect(dependsOn.join('\n')).toContain('hubKeyUpdaterRole');
      expect(dependsOn.join('\n')).toContain('functionApp');
    }
  });

  it('keeps shared keys off and creates the queues the app works through', () => {
    const [account] = ofType('Microsoft.Storage/storageAccounts');
    expect(account!.resource.properties.allowSharedKeyAccess).toBe(false);
    const queues = ofType('Microsoft.Storage/storageAccounts/queueServices/queues');
    const names = queues.flatMap((q) => {
      const items = q.resource.copy ? (q.template.variables?.appQueueNames as string[]) : [];
      return q.resource.copy ? items : [trace(q.resource.name, contextOf(q))];
    });
    expect(names).toEqual(expect.arrayContaining(['hub-steps', 'hub-steps-poison']));
    expect(JSON.stringify(main)).not.toContain('listKeys(');
  });
});

describe('what ARM checks only at deploy time', () => {
  it('gives every basicPublishingCredentialsPolicies a location (the resource provider rejects it without one)', () => {
    const policies = ofType('Microsoft.Web/sites/basicPublishingCredentialsPolicies');
    expect(policies.map((p): unknown => p.resource.properties.allow)).toEqual([false, false]);
    for (const p of policies) expect(trace(p.resource.location, contextOf(p))).toContain("parameters('location')");
  });

  it("keeps an existing system topic's identities, tags and region, and only adds Event Grid's identity", () => {
    const existing = module('existingSystemTopic');
    const nested = existing.resource.properties.template as ArmTemplate;
    const write = allResources(nested, existing).find((p) => p.resource.type === 'Microsoft.Resources/deployments');
    // A parameter is { value } or, when Bicep folds a condition into it, an expression yielding { value }.
    const passed = write!.resource.properties.parameters as Record<string, { value: unknown } | string>;
    const traced = (name: string): string => {
      const given = passed[name]!;
      return trace(typeof given === 'string' ? given : given.value, contextOf(write!));
    };
    // Read from the topic itself: reference(resourceId('Microsoft.EventGrid/systemTopics', <name>), <api>, 'full').
    const fromTopic = (traced: string, then: string): void => {
      expect(traced).toContain("reference(resourceId('Microsoft.EventGrid/systemTopics'");
      expect(traced).toContain(`'full')${then}`);
    };
    fromTopic(traced('tags'), ", 'tags')");
    fromTopic(traced('location'), '.location');
    expect(traced('userAssignedIdentityIds')).toMatch(/objectKeys\(.*identity.*userAssignedIdentities/);
    expect(traced('userAssignedIdentityIds')).toMatch(/createArray\(.*'id-evgt-/);
    expect(traced('identityType')).toContain("'SystemAssigned, UserAssigned'");
    // Exactly one of the two topic modules runs.
    expect(existing.resource.condition).toBe("[variables('useExistingSystemTopic')]");
    expect(module('newSystemTopic').resource.condition).toBe("[not(variables('useExistingSystemTopic'))]");
    // And it runs where the topic is, not where the vault is.
    expect(existing.resource.resourceGroup).toBe("[variables('systemTopicResourceGroupName')]");
  });
});

describe('azd and the hooks (compiled)', () => {
  const azdProvided = ['AZURE_ENV_NAME', 'AZURE_LOCATION', 'AZURE_SUBSCRIPTION_ID'];
  const hookKnobs = ['ROTATOR_ROLE_WAIT_SECONDS'];
  const azdValues = (): string[] =>
    [...readFileSync('infra/main.parameters.json', 'utf8').matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]!);

  function variablesUsed(file: string): string[] {
    const text = readFileSync(file, 'utf8');
    const pattern = file.endsWith('.ps1') ? /\$env:([A-Z][A-Z0-9_]+)|'([A-Z][A-Z0-9_]+)'/g : /\$\{?([A-Z][A-Z0-9_]+)/g;
    const names = [...text.matchAll(pattern)].map((m) => m[1] ?? m[2]!);
    return [...new Set(names)].filter((n) => !['READER_ROLE', 'WAIT_SECONDS'].includes(n));
  }

  it('reads in its hooks only main.json outputs, values azd provides, and the azd values main.parameters.json maps', () => {
    const outputs = Object.keys(main.outputs ?? {});
    const known = new Set([...outputs, ...azdProvided, ...azdValues(), ...hookKnobs]);
    const hooks = readdirSync('infra/hooks').map((f) => path.join('infra/hooks', f));
    expect(hooks.length).toBeGreaterThanOrEqual(4);
    for (const hook of hooks)
      expect(
        variablesUsed(hook).filter((n) => !known.has(n)),
        hook,
      ).toEqual([]);
    for (const [name, output] of Object.entries(main.outputs ?? {})) expect(output.type, name).toBe('string');
  });

  it('runs hooks that exist, for both shells, and provisions infra/main', () => {
    const yaml = readFileSync('azure.yaml', 'utf8');
    expect(yaml).toMatch(/infra:\n\s+provider: bicep\n\s+path: infra\n\s+module: main\n/);
    const runs = [...yaml.matchAll(/run: \.\/(\S+)/g)].map((m) => m[1]!);
    expect(runs.sort()).toEqual([
      'infra/hooks/postdeploy.ps1',
      'infra/hooks/postdeploy.sh',
      'infra/hooks/preprovision.ps1',
      'infra/hooks/preprovision.sh',
    ]);
    for (const run of runs) expect(() => readFileSync(run)).not.toThrow();
  });

  it('passes key-vault-events.json exactly its parameters from the postdeploy hooks', () => {
    const declared = Object.keys(events.parameters ?? {}).sort();
    for (const hook of ['infra/hooks/postdeploy.sh', 'infra/hooks/postdeploy.ps1']) {
      const text = readFileSync(hook, 'utf8');
      const block = text.slice(text.indexOf('--parameters'), text.indexOf('--output none'));
      expect([...block.matchAll(/(\w+)=/g)].map((m) => m[1]).sort(), hook).toEqual(declared);
    }
  });

  it('writes JMESPath literals in backticks in every hook query (a bare null is a field that happens to be missing)', () => {
    for (const hook of readdirSync('infra/hooks').map((f) => path.join('infra/hooks', f))) {
      const queries = [...readFileSync(hook, 'utf8').matchAll(/--query\s+(['"])(.*?)\1/g)].map((m) => m[2]!);
      for (const query of queries) {
        const bare = query.replace(/`[^`]*`/g, '').replace(/'[^']*'/g, '');
        expect(bare, `${hook}: ${query}`).not.toMatch(/\b(null|true|false)\b/);
      }
    }
  });
});

describe('parameter files', () => {
  const examples = readdirSync('infra/examples')
    .filter((f) => f.endsWith('.parameters.json'))
    .map((f) => path.join('infra/examples', f));

  type Given = Record<string, { value: unknown }>;
  const read = (file: string): Given => (JSON.parse(readFileSync(file, 'utf8')) as { parameters: Given }).parameters;

  function problems(given: Given): string[] {
    const declared = main.parameters ?? {};
    const found: string[] = [];
    for (const [name, { value }] of Object.entries(given)) {
      const p: ArmParameter | undefined = declared[name];
      if (!p) {
        found.push(`${name} is not a parameter of main.json`);
        continue;
      }
      if (typeof value === 'string' && value.startsWith('${')) continue; // azd fills it in
      const ok =
        (p.type === 'string' && typeof value === 'string') ||
        (p.type === 'int' && Number.isInteger(value)) ||
        (p.type === 'bool' && typeof value === 'boolean');
      if (!ok) found.push(`${name}: ${JSON.stringify(value)} is not ${p.type}`);
      if (typeof value === 'number' && p.minValue !== undefined && value < p.minValue) found.push(`${name} < min`);
      if (typeof value === 'number' && p.maxValue !== undefined && value > p.maxValue) found.push(`${name} > max`);
      if (typeof value === 'string' && p.minLength !== undefined && value.length < p.minLength)
        found.push(`${name} too short`);
      if (typeof value === 'string' && p.maxLength !== undefined && value.length > p.maxLength)
        found.push(`${name} too long`);
    }
    for (const [name, p] of Object.entries(declared))
      if (p.defaultValue === undefined && !(name in given)) found.push(`${name} is required`);
    const value = (name: string): unknown => given[name]?.value ?? declared[name]?.defaultValue;
    if (Number(value('notifyDaysBeforeExpiry')) >= Number(value('keyValidityDays')))
      found.push('notifyDaysBeforeExpiry must be less than keyValidityDays');
    const ids: Record<string, RegExp> = {
      existingKeyVaultResourceId:
        /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.KeyVault\/vaults\/[^/]+$/i,
      existingKeyVaultSystemTopicResourceId:
        /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.EventGrid\/systemTopics\/[^/]+$/i,
      hubResourceGroupIds:
        /^\/subscriptions\/[^/]+\/resourceGroups\/[^/,]+(,\s*\/subscriptions\/[^/]+\/resourceGroups\/[^/,]+)*$/i,
    };
    for (const [name, pattern] of Object.entries(ids)) {
      const v = given[name]?.value;
      if (typeof v === 'string' && v !== '' && !v.startsWith('${') && !pattern.test(v)) found.push(`${name}: ${v}`);
    }
    return found;
  }

  it('covers a new vault, an existing vault elsewhere, and hubs limited to resource groups', () => {
    expect(examples.map((f) => path.basename(f)).sort()).toEqual([
      'existing-vault.parameters.json',
      'hub-resource-groups.parameters.json',
      'new-vault.parameters.json',
    ]);
    const given = read;
    expect(given('infra/examples/new-vault.parameters.json').existingKeyVaultResourceId).toBeUndefined();
    expect(given('infra/examples/existing-vault.parameters.json').existingKeyVaultResourceId?.value).toMatch(
      /^\/subscriptions\//,
    );
    expect(given('infra/examples/hub-resource-groups.parameters.json').hubResourceGroupIds?.value).toMatch(
      /resourceGroups/,
    );
  });

  it.each([...examples, 'infra/main.parameters.json'])('%s fits main.json', (file) => {
    expect(problems(read(file))).toEqual([]);
  });

  it('catches a parameter file that breaks the rules', () => {
    expect(
      problems({
        environmentName: { value: 'x' },
        location: { value: 'westeurope' },
        keyValidityDays: { value: 30 },
        notifyDaysBeforeExpiry: { value: 30 },
        existingKeyVaultResourceId: { value: 'kv-name' },
        nope: { value: 1 },
      }),
    ).toEqual([
      'nope is not a parameter of main.json',
      'notifyDaysBeforeExpiry must be less than keyValidityDays',
      'existingKeyVaultResourceId: kv-name',
    ]);
  });
});
