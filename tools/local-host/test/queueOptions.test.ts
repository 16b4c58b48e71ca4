// host.json `extensions.queues` and the trigger's `connection`, read as the Functions host reads them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveQueueConnection } from '../src/queueConnection';
import { isValidQueueName, poisonQueueName } from '../src/queueListener';
import { loadQueueTriggerOptions, parseQueueTriggerOptions } from '../src/queueOptions';

describe('queue trigger options', () => {
  it("defaults to the host's: 16 per batch, threshold batchSize/2 per core, 1 min polling, 5 dequeues, base64", () => {
    expect(parseQueueTriggerOptions({}, {}, 4)).toEqual({
      batchSize: 16,
      newBatchThreshold: 32,
      maxPollingIntervalMs: 60_000,
      maxDequeueCount: 5,
      visibilityTimeoutMs: 0,
      messageEncoding: 'base64',
      leaseMs: 600_000,
    });
    // The Consumption plan counts one core; a threshold follows the batch size it is derived from.
    expect(parseQueueTriggerOptions({ batchSize: 5 }, { WEBSITE_SKU: 'Dynamic' }).newBatchThreshold).toBe(2);
  });

  it('binds names without regard to case, numbers written as strings, and .NET time spans', () => {
    expect(
      parseQueueTriggerOptions(
        {
          BatchSize: '8',
          newbatchthreshold: 0,
          maxPollingInterval: '00:00:00.200',
          VisibilityTimeout: '1.00:00:30',
          maxDequeueCount: 2,
          messageEncoding: 'None',
        },
        { LOCAL_HOST_QUEUE_LEASE_SECONDS: '30' },
        2,
      ),
    ).toEqual({
      batchSize: 8,
      newBatchThreshold: 0,
      maxPollingIntervalMs: 200,
      maxDequeueCount: 2,
      visibilityTimeoutMs: 86_430_000,
      messageEncoding: 'none',
      leaseMs: 30_000,
    });
  });

  it('refuses values the host would refuse, or misread', () => {
    const parse =
      (queues: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
      () =>
        parseQueueTriggerOptions(queues, env, 2);
    expect(parse({ batchSize: 0 })).toThrow('batchSize must be a whole number from 1 to 32, got 0.');
    expect(parse({ maxDequeueCount: 0 })).toThrow('maxDequeueCount must be a whole number at least 1');
    expect(parse({ newBatchThreshold: -1 })).toThrow('newBatchThreshold must be a whole number at least 0');
    expect(parse({ maxPollingInterval: '00:00:00.050' })).toThrow('must not be less than 100 ms');
    expect(parse({ visibilityTimeout: '2000' })).toThrow('the host reads the bare number 2000 as days');
    expect(parse({ visibilityTimeout: '00:61:00' })).toThrow('must be a time span such as "00:01:00"');
    expect(parse({}, { LOCAL_HOST_QUEUE_LEASE_SECONDS: '0' })).toThrow(
      'LOCAL_HOST_QUEUE_LEASE_SECONDS must be a whole number of seconds from 1 to 604800, got "0".',
    );
  });

  it('reads host.json from the app folder, and every default without one', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'host-json-'));
    try {
      expect(loadQueueTriggerOptions(dir, {}).batchSize).toBe(16);
      writeFileSync(
        path.join(dir, 'host.json'),
        JSON.stringify({ version: '2.0', extensions: { queues: { batchSize: 4 } } }),
      );
      expect(loadQueueTriggerOptions(dir, {}).batchSize).toBe(4);
      writeFileSync(path.join(dir, 'host.json'), '{ "version": ');
      expect(() => loadQueueTriggerOptions(dir, {})).toThrow(/host\.json is not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('queue names', () => {
  it("follows Azure's rules, and names the poison queue as the host does", () => {
    expect(['hub-steps', 'abc', 'a'.repeat(63)].every(isValidQueueName)).toBe(true);
    expect(['ab', 'Hub-steps', 'hub--steps', '-hub', 'hub-', 'a'.repeat(64)].some(isValidQueueName)).toBe(false);
    expect(poisonQueueName('hub-steps')).toBe('hub-steps-poison');
    expect(poisonQueueName('hub-steps-poison')).toBeUndefined(); // a poison queue has none of its own
    expect(poisonQueueName('a'.repeat(60))).toBeUndefined(); // the suffix would make the name too long
  });
});

describe('queue connections', () => {
  it('takes a connection string from the named setting, or from AzureWebJobs<name>', () => {
    const devStorage = 'UseDevelopmentStorage=true';
    expect(resolveQueueConnection(undefined, { AzureWebJobsStorage: devStorage })).toMatchObject({
      settingName: 'AzureWebJobsStorage',
    });
    const prefixed = resolveQueueConnection('HubStorage', { AzureWebJobsHubStorage: devStorage });
    expect(prefixed.settingName).toBe('AzureWebJobsHubStorage');
    expect(prefixed.client.url).toBe('http://127.0.0.1:10001/devstoreaccount1');
  });

  it('builds an identity-based connection from <name>__queueServiceUri or <name>__accountName', () => {
    const byAccount = resolveQueueConnection('AzureWebJobsStorage', { AzureWebJobsStorage__accountName: 'cmkrotator' });
    expect(byAccount).toMatchObject({ settingName: 'AzureWebJobsStorage__*' });
    expect(byAccount.client.url).toBe('https://cmkrotator.queue.core.windows.net');
    const byUri = resolveQueueConnection('Steps', {
      Steps__queueServiceUri: 'https://other.queue.core.windows.net/',
      Steps__clientId: '00000000-0000-0000-0000-000000000001',
    });
    expect(byUri.client.url).toBe('https://other.queue.core.windows.net');
  });
});
