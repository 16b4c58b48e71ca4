// The metadata the real Azure Functions host receives from the app (the same registrations the local host serves).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFunctionApp } from '@cmk-rotator/local-host/registry';
import type { LoadedApp } from '@cmk-rotator/local-host/registry';

const settings = {
  ROTATOR_ALLOWED_VAULTS: 'https://contoso.vault.azure.net',
  ROTATOR_SUBSCRIPTION_IDS: '00000000-0000-0000-0000-000000000001',
  AzureWebJobsStorage: 'UseDevelopmentStorage=true',
  ROTATOR_RECONCILE_SCHEDULE: '0 */30 * * * *',
};

describe('function registrations (dist/main.mjs, as built by npm run build)', () => {
  let loaded: LoadedApp;
  beforeAll(async () => {
    Object.assign(process.env, settings);
    loaded = await loadFunctionApp(path.resolve('.'));
  });
  afterAll(() => {
    for (const key of Object.keys(settings)) delete process.env[key];
  });

  it('registers every function with the trigger, route, methods and auth level Azure will see', () => {
    const summary = Object.fromEntries(
      loaded.functions.map((f) => [
        f.name,
        { trigger: f.triggerType, route: f.route, methods: f.methods, authLevel: f.authLevel, schedule: f.schedule },
      ]),
    );
    expect(summary).toEqual({
      keyVaultEvents: { trigger: 'eventGridTrigger' },
      rotateKey: { trigger: 'httpTrigger', route: 'keys/rotate', methods: ['POST'], authLevel: 'function' },
      syncKey: { trigger: 'httpTrigger', route: 'keys/sync', methods: ['POST'], authLevel: 'function' },
      keyStatus: { trigger: 'httpTrigger', route: 'keys/status', methods: ['GET'], authLevel: 'function' },
      rotationHistory: { trigger: 'httpTrigger', route: 'rotations', methods: ['GET'], authLevel: 'function' },
      reconcileNow: { trigger: 'httpTrigger', route: 'reconcile', methods: ['POST'], authLevel: 'function' },
      reconcile: { trigger: 'timerTrigger', schedule: '0 */30 * * * *' },
      health: { trigger: 'httpTrigger', route: 'health', methods: ['GET'], authLevel: 'anonymous' },
      jobStatus: { trigger: 'httpTrigger', route: 'jobs/{id}', methods: ['GET'], authLevel: 'function' },
      retireVersions: { trigger: 'httpTrigger', route: 'keys/retire', methods: ['POST'], authLevel: 'function' },
      keyImpact: { trigger: 'httpTrigger', route: 'keys/impact', methods: ['GET'], authLevel: 'function' },
      revokeKey: { trigger: 'httpTrigger', route: 'keys/revoke', methods: ['POST'], authLevel: 'function' },
      restoreKey: { trigger: 'httpTrigger', route: 'keys/restore', methods: ['POST'], authLevel: 'function' },
      hubSteps: { trigger: 'queueTrigger' },
      hubStepsPoison: { trigger: 'queueTrigger' },
      listKeys: { trigger: 'httpTrigger', route: 'keys', methods: ['GET'], authLevel: 'function' },
      dashboard: { trigger: 'httpTrigger', route: 'dashboard', methods: ['GET'], authLevel: 'function' },
    });
  });

  it('binds the step functions to the step queue and its poison queue, on the app’s own storage', () => {
    const queueOf = (name: string) => {
      const fn = loaded.functions.find((f) => f.name === name)!;
      return Object.values(fn.bindings).map((b) => [b.type, b.direction, b.queueName, b.connection]);
    };
    expect(queueOf('hubSteps')).toEqual([['queueTrigger', 'in', 'hub-steps', 'AzureWebJobsStorage']]);
    expect(queueOf('hubStepsPoison')).toEqual([['queueTrigger', 'in', 'hub-steps-poison', 'AzureWebJobsStorage']]);
  });

  it('binds HTTP functions to an http output and the Event Grid function to an eventGridTrigger input', () => {
    const rotate = loaded.functions.find((f) => f.name === 'rotateKey')!;
    expect(Object.values(rotate.bindings).map((b) => [b.type, b.direction])).toEqual(
      expect.arrayContaining([
        ['httpTrigger', 'in'],
        ['http', 'out'],
      ]),
    );
    const events = loaded.functions.find((f) => f.name === 'keyVaultEvents')!;
    expect(Object.values(events.bindings).map((b) => [b.type, b.direction])).toEqual([['eventGridTrigger', 'in']]);
  });
});
