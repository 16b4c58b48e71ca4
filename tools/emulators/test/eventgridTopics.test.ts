import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { TokenCredential } from '@azure/core-auth';
import {
  AzureKeyCredential,
  AzureSASCredential,
  EventGridPublisherClient,
  generateSharedAccessSignature,
} from '@azure/eventgrid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueToken } from '../src/auth';
import { startEventGridEmulator, topicResourceId } from '../src/eventgrid';
import type { EventGridEmulator, TopicEvent } from '../src/eventgrid';
import { startAzureProxy } from '../src/proxy';
import type { RunningProxy } from '../src/proxy';
import { ensureDevCertificate } from '../src/tls';

const TOPIC = 'rotation-outcomes';
const ENDPOINT = `https://${TOPIC}.westeurope-1.eventgrid.azure.net/api/events`;
const TOPIC_KEY = randomBytes(32).toString('base64');

/** A managed identity that hands out tokens for whatever audience `resource` says (the requested one by default). */
function credentialFor(resource?: string): TokenCredential {
  return {
    getToken: (scopes) => {
      const scope = Array.isArray(scopes) ? String(scopes[0]) : String(scopes);
      return Promise.resolve({
        token: issueToken(resource ?? scope.replace(/\/\.default$/, '')),
        expiresOnTimestamp: Date.now() + 3600e3,
      });
    },
  };
}

describe('Event Grid emulator: custom topic endpoint', () => {
  let emulator: EventGridEmulator;
  let proxy: RunningProxy;
  let deadLetterDir: string;
  let clientOptions: { proxyOptions: { host: string; port: number }; retryOptions: { maxRetries: number } };

  beforeAll(async () => {
    const tls = ensureDevCertificate(path.resolve('.data/test-tls'));
    deadLetterDir = mkdtempSync(path.join(os.tmpdir(), 'eventgrid-topics-'));
    emulator = await startEventGridEmulator({ tls, deadLetterDir, topicKeys: { [TOPIC]: TOPIC_KEY } });
    proxy = await startAzureProxy({ routes: [{ host: '*.eventgrid.azure.net', port: emulator.port }] });
    clientOptions = { proxyOptions: { host: 'http://127.0.0.1', port: proxy.port }, retryOptions: { maxRetries: 0 } };
  });

  afterAll(async () => {
    await proxy.close();
    await emulator.close();
    rmSync(deadLetterDir, { recursive: true, force: true });
  });

  const receivedById = (id: string): TopicEvent | undefined => emulator.received(TOPIC).find((e) => e.id === id);

  it('accepts EventGrid-schema events with the access key and stamps topic and metadataVersion', async () => {
    const client = new EventGridPublisherClient(
      ENDPOINT,
      'EventGrid',
      new AzureKeyCredential(TOPIC_KEY),
      clientOptions,
    );
    const id = randomUUID();
    await client.send([
      {
        id,
        eventType: 'CmkRotator.RotationSucceeded',
        subject: 'vaults/demo/keys/cmk-hub',
        dataVersion: '1.0',
        data: { hubsUpdated: 2 },
      },
    ]);

    expect(receivedById(id)).toMatchObject({
      topicName: TOPIC,
      schema: 'EventGridSchema',
      type: 'CmkRotator.RotationSucceeded',
      subject: 'vaults/demo/keys/cmk-hub',
      data: { hubsUpdated: 2 },
      event: {
        id,
        topic: topicResourceId(TOPIC),
        eventType: 'CmkRotator.RotationSucceeded',
        dataVersion: '1.0',
        metadataVersion: '1',
        eventTime: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/) as unknown,
      },
    });
  });

  it('accepts CloudEvents with a managed identity token (audience https://eventgrid.azure.net)', async () => {
    const client = new EventGridPublisherClient(ENDPOINT, 'CloudEvent', credentialFor(), clientOptions);
    const id = randomUUID();
    await client.send([
      { id, type: 'CmkRotator.RotationFailed', source: '/cmk-rotator', subject: 'hub-1', data: { reason: 'x' } },
    ]);

    expect(receivedById(id)).toMatchObject({
      schema: 'CloudEventSchemaV1_0',
      type: 'CmkRotator.RotationFailed',
      subject: 'hub-1',
      data: { reason: 'x' },
      event: { id, specversion: '1.0', source: '/cmk-rotator', datacontenttype: 'application/json' },
    });
  });

  it('accepts a shared access signature made from the topic key', async () => {
    const signature = await generateSharedAccessSignature(
      ENDPOINT,
      new AzureKeyCredential(TOPIC_KEY),
      new Date(Date.now() + 10 * 60_000),
    );
    const client = new EventGridPublisherClient(
      ENDPOINT,
      'CloudEvent',
      new AzureSASCredential(signature),
      clientOptions,
    );
    const id = randomUUID();
    await client.send([{ id, type: 'CmkRotator.RotationSucceeded', source: '/cmk-rotator', data: {} }]);
    expect(receivedById(id)).toBeDefined();
  });

  it.each([
    ['a wrong access key', () => new AzureKeyCredential(randomBytes(32).toString('base64'))],
    ['a token for another audience', () => credentialFor('https://vault.azure.net')],
  ])('answers 401 to %s', async (_case, credential) => {
    const client = new EventGridPublisherClient(ENDPOINT, 'CloudEvent', credential(), clientOptions);
    await expect(
      client.send([{ type: 'CmkRotator.RotationSucceeded', source: '/cmk-rotator', data: {} }]),
    ).rejects.toMatchObject({ name: 'RestError', statusCode: 401, code: 'Unauthorized' });
  });

  it('answers 401 to a SAS signed with another key or already expired', async () => {
    const forged = await generateSharedAccessSignature(
      ENDPOINT,
      new AzureKeyCredential(randomBytes(32).toString('base64')),
      new Date(Date.now() + 10 * 60_000),
    );
    const expired = await generateSharedAccessSignature(
      ENDPOINT,
      new AzureKeyCredential(TOPIC_KEY),
      new Date(Date.now() - 60_000),
    );
    for (const signature of [forged, expired]) {
      const client = new EventGridPublisherClient(
        ENDPOINT,
        'EventGrid',
        new AzureSASCredential(signature),
        clientOptions,
      );
      await expect(client.send([{ eventType: 'T', subject: 's', dataVersion: '1', data: {} }])).rejects.toMatchObject({
        statusCode: 401,
      });
    }
  });

  it('answers 400 in Event Grid error shape to an invalid event, naming the field', async () => {
    const client = new EventGridPublisherClient(
      ENDPOINT,
      'EventGrid',
      new AzureKeyCredential(TOPIC_KEY),
      clientOptions,
    );
    await expect(client.send([{ eventType: '', subject: 's', dataVersion: '1', data: {} }])).rejects.toMatchObject({
      statusCode: 400,
      code: 'BadRequest',
      message: expect.stringContaining("events[0]: 'eventType' must not be empty") as unknown,
    });
  });

  it('answers 400 with InputJsonInvalid to a body that is not JSON', async () => {
    const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = https.request(
        {
          host: '127.0.0.1',
          port: emulator.port,
          path: '/api/events?api-version=2018-01-01',
          method: 'POST',
          headers: {
            host: `${TOPIC}.westeurope-1.eventgrid.azure.net`,
            'content-type': 'application/json',
            'aeg-sas-key': TOPIC_KEY,
          },
        },
        (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      request.on('error', reject);
      request.end('[{"id": ');
    });
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body)).toMatchObject({
      error: { code: 'BadRequest', details: [{ code: 'InputJsonInvalid' }] },
    });
  });

  it('answers 413 to a publish request over 1 MB', async () => {
    const client = new EventGridPublisherClient(
      ENDPOINT,
      'EventGrid',
      new AzureKeyCredential(TOPIC_KEY),
      clientOptions,
    );
    const id = randomUUID();
    await expect(
      client.send([{ id, eventType: 'T', subject: 's', dataVersion: '1', data: { blob: 'x'.repeat(1024 * 1024) } }]),
    ).rejects.toMatchObject({ statusCode: 413 });
    expect(receivedById(id)).toBeUndefined();
  });

  it('tells listeners about accepted events and lists them on the loopback admin route', async () => {
    const heard: TopicEvent[] = [];
    const stop = emulator.onEvent((event) => heard.push(event));
    const client = new EventGridPublisherClient(ENDPOINT, 'CloudEvent', credentialFor(), clientOptions);
    const id = randomUUID();
    await client.send([{ id, type: 'CmkRotator.RotationSucceeded', source: '/cmk-rotator', data: { hub: 'h' } }]);
    stop();

    expect(heard.map((event) => event.id)).toEqual([id]);
    const listed = await new Promise<TopicEvent[]>((resolve, reject) => {
      https
        .get(`${emulator.adminUrl}/_admin/topics/${TOPIC}/events`, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve(JSON.parse(body) as TopicEvent[]));
        })
        .on('error', reject);
    });
    expect(listed.find((event) => event.id === id)).toMatchObject({
      type: 'CmkRotator.RotationSucceeded',
      data: { hub: 'h' },
    });
  });
});
