// The local host refuses malformed and cross-site requests as the client's fault (4xx), never as its own (500).
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalHost } from '../src/server';
import { startLocalHost } from '../src/server';
import type { FixtureApp } from './fixture';
import { createFixtureApp } from './fixture';

const key = 'hygiene-test-key';
const maxBody = 1024;

const hygieneAppSource = `
const { app } = require('@azure/functions');
app.http('operatorAction', {
  route: 'ops/action',
  methods: ['GET', 'POST'],
  authLevel: 'function',
  handler: async (request) => ({ jsonBody: { received: await request.text() } }),
});
app.http('open', {
  route: 'open/{id}',
  methods: ['GET', 'POST'],
  authLevel: 'anonymous',
  handler: async (request) => ({ body: 'open ' + request.params.id + ' ' + (await request.arrayBuffer()).byteLength }),
});
app.eventGrid('onEvent', { handler: () => {} });
app.timer('tick', { schedule: '0 0 0 1 1 *', handler: () => {} });
`;

interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** node:http rather than fetch: these requests set Host and Origin, and send bodies fetch would not frame this way. */
function rawRequest(
  host: LocalHost,
  init: { method?: string; path: string; headers?: Record<string, string>; body?: string | string[] },
): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: host.port, method: init.method ?? 'GET', path: init.path, headers: init.headers },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    // An array is sent chunk by chunk without a Content-Length (Transfer-Encoding: chunked).
    for (const chunk of Array.isArray(init.body) ? init.body : init.body === undefined ? [] : [init.body]) {
      req.write(chunk);
    }
    req.end();
  });
}

const errorCode = (reply: RawReply): unknown => (JSON.parse(reply.body) as { error: { code: unknown } }).error.code;
const nested = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('local host request hygiene', () => {
  let fixture: FixtureApp;
  let host: LocalHost;
  let operatorHeaders: Record<string, string>;

  beforeAll(async () => {
    fixture = createFixtureApp(hygieneAppSource);
    host = await startLocalHost({
      appDir: fixture.dir,
      port: 0,
      functionKey: key,
      maxRequestBodyBytes: maxBody,
      log: () => {},
    });
    operatorHeaders = { 'x-functions-key': key, 'content-type': 'application/json' };
  });
  afterAll(async () => {
    await host.close();
    fixture.remove();
  });

  it('answers 413 to a body over the limit, declared or chunked, and serves one at the limit', async () => {
    const declared = await rawRequest(host, { method: 'POST', path: '/api/open/1', body: 'x'.repeat(maxBody + 1) });
    expect(declared.status).toBe(413);
    expect(errorCode(declared)).toBe('PAYLOAD_TOO_LARGE');

    const chunked = await rawRequest(host, {
      method: 'POST',
      path: '/api/open/1',
      body: ['x'.repeat(600), 'y'.repeat(600)],
    });
    expect(chunked.status).toBe(413);

    const eventGrid = await rawRequest(host, {
      method: 'POST',
      path: '/runtime/webhooks/eventgrid?functionName=onEvent',
      headers: { 'aeg-event-type': 'Notification', 'content-type': 'application/json' },
      body: `[${' '.repeat(maxBody)}]`,
    });
    expect(eventGrid.status).toBe(413);

    const atLimit = await rawRequest(host, { method: 'POST', path: '/api/open/1', body: 'x'.repeat(maxBody) });
    expect(atLimit).toMatchObject({ status: 200, body: `open 1 ${maxBody}` });
  });

  it('refuses to start with a function key longer than it will compare', async () => {
    await expect(
      startLocalHost({ appDir: fixture.dir, port: 0, functionKey: 'k'.repeat(257), log: () => {} }),
    ).rejects.toThrow('The function key must be at most 256 characters long.');
  });

  it('answers 400 to invalid percent-encoding in the path or the query', async () => {
    const adminInvoke = await rawRequest(host, {
      method: 'POST',
      path: '/admin/functions/%E0%A4%A',
      headers: operatorHeaders,
      body: '{}',
    });
    expect(adminInvoke.status).toBe(400);
    expect(errorCode(adminInvoke)).toBe('BAD_REQUEST');
    expect((await rawRequest(host, { path: '/api/open/%ZZ' })).status).toBe(400);
    expect((await rawRequest(host, { path: '/api/open/1?q=%E0%A4' })).status).toBe(400);
    expect((await rawRequest(host, { path: '/api/open/a%20b?q=%C3%A9' })).status).toBe(200);
  });

  it('answers 400 to JSON it parses that is nested too deep', async () => {
    const event = {
      id: 'deep',
      eventType: 'Microsoft.KeyVault.KeyNearExpiry',
      subject: 'k',
      eventTime: '2030-01-01T00:00:00Z',
      data: '<nested>',
    };
    const deepEvent = JSON.stringify([event]).replace('"<nested>"', nested(100_000));
    const bigHost = await startLocalHost({ appDir: fixture.dir, port: 0, functionKey: key, log: () => {} });
    try {
      const eventGrid = await rawRequest(bigHost, {
        method: 'POST',
        path: '/runtime/webhooks/eventgrid?functionName=onEvent',
        headers: { 'aeg-event-type': 'Notification', 'content-type': 'application/json' },
        body: deepEvent,
      });
      expect(eventGrid.status).toBe(400);
      expect(eventGrid.body).toMatch(/nested deeper than 64 levels/);

      const adminInvoke = await rawRequest(bigHost, {
        method: 'POST',
        path: '/admin/functions/tick',
        headers: operatorHeaders,
        body: `{"input":${nested(100_000)}}`,
      });
      expect(adminInvoke.status).toBe(400);

      const shallow = JSON.stringify([event]).replace('"<nested>"', nested(60));
      const accepted = await rawRequest(bigHost, {
        method: 'POST',
        path: '/runtime/webhooks/eventgrid?functionName=onEvent',
        headers: { 'aeg-event-type': 'Notification', 'content-type': 'application/json' },
        body: shallow,
      });
      expect(accepted.status).toBe(202);
    } finally {
      await bigHost.close();
    }
  });

  it('answers 400 to a Host header that is malformed or names another machine', async () => {
    expect((await rawRequest(host, { path: '/api/open/1', headers: { host: 'not a host' } })).status).toBe(400);
    const rebound = await rawRequest(host, { path: '/api/open/1', headers: { host: `attacker.example:${host.port}` } });
    expect(rebound.status).toBe(400);
    expect(errorCode(rebound)).toBe('BAD_REQUEST');
    expect((await rawRequest(host, { path: '//attacker.example/api/open/1' })).status).toBe(400);
    for (const loopback of [`localhost:${host.port}`, `127.0.0.1:${host.port}`, `[::1]:${host.port}`]) {
      expect((await rawRequest(host, { path: '/api/open/1', headers: { host: loopback } })).status).toBe(200);
    }
  });

  it('refuses a body that is not declared JSON on operator routes with 415, and takes JSON', async () => {
    for (const contentType of ['application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x']) {
      const reply = await rawRequest(host, {
        method: 'POST',
        path: '/api/ops/action',
        headers: { 'x-functions-key': key, 'content-type': contentType },
        body: 'keyId=https%3A%2F%2Fdemo.vault.azure.net%2Fkeys%2Fk',
      });
      expect(reply.status).toBe(415);
      expect(errorCode(reply)).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    const admin = await rawRequest(host, {
      method: 'POST',
      path: '/admin/functions/tick',
      headers: { 'x-functions-key': key, 'content-type': 'text/plain' },
      body: '{"input":""}',
    });
    expect(admin.status).toBe(415);

    const json = await rawRequest(host, {
      method: 'POST',
      path: '/api/ops/action',
      headers: operatorHeaders,
      body: '{}',
    });
    expect(json).toMatchObject({ status: 200, body: '{"received":"{}"}' });
    // Anonymous routes are not operator routes: they take what the function takes.
    const open = await rawRequest(host, {
      method: 'POST',
      path: '/api/open/2',
      headers: { 'content-type': 'text/plain' },
      body: 'abc',
    });
    expect(open).toMatchObject({ status: 200, body: 'open 2 3' });
  });

  it("refuses an Origin other than the host's own on operator routes with 403", async () => {
    const foreign = { ...operatorHeaders, origin: 'https://attacker.example' };
    const post = await rawRequest(host, { method: 'POST', path: '/api/ops/action', headers: foreign, body: '{}' });
    expect(post.status).toBe(403);
    expect(errorCode(post)).toBe('CROSS_ORIGIN_REFUSED');
    expect((await rawRequest(host, { path: '/api/ops/action', headers: foreign })).status).toBe(403);
    expect((await rawRequest(host, { path: '/admin/functions', headers: foreign })).status).toBe(403);
    expect(
      (await rawRequest(host, { path: '/api/ops/action', headers: { ...operatorHeaders, origin: 'null' } })).status,
    ).toBe(403);

    const own = { ...operatorHeaders, origin: `http://127.0.0.1:${host.port}` };
    expect((await rawRequest(host, { method: 'POST', path: '/api/ops/action', headers: own, body: '{}' })).status).toBe(
      200,
    );
    expect(
      (await rawRequest(host, { path: '/api/open/3', headers: { origin: 'https://attacker.example' } })).status,
    ).toBe(200);
  });
});
