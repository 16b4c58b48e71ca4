// The HTTP functions, called as the host calls them with @azure/functions' own HttpRequest and InvocationContext:
// input validation (400 naming the fields), the answers to each error, health.
import { describe, expect, it, vi } from 'vitest';
import { dashboardHandler } from '../../functions/dashboard';
import { healthHandler } from '../../functions/health';
import { jobStatusHandler } from '../../functions/jobStatus';
import { keyStatusHandler } from '../../functions/keyStatus';
import { listKeysHandler } from '../../functions/listKeys';
import { reconcileNowHandler } from '../../functions/reconcileNow';
import { rotateKeyHandler } from '../../functions/rotateKey';
import { rotationHistoryHandler } from '../../functions/rotationHistory';
import { syncKeyHandler } from '../../functions/syncKey';
import {
  BusyError,
  HubKeyNotAppliedError,
  JobNotFoundError,
  KeyNotFoundError,
  KeyUnusableError,
  ThrottledError,
  UpstreamRejectedError,
  UpstreamUnavailableError,
  VaultNotAllowedError,
} from '../../src/domain/errors';
import type { RotationReport, Rotator } from '../../src/application';
import { handled } from '../../src/hosting/http';
import { ConfigInvalidError } from '../../src/hosting/services';
import { KEY, VAULT, fakeRotator, hubId } from '../fakes/rotator';
import { errorOf, invocation, request, stubRotator } from './helpers';

const KEY_ID = `${VAULT}/keys/hub-cmk`;
const REPORT: RotationReport = {
  keyId: KEY_ID,
  trigger: 'manual-rotate',
  dryRun: false,
  decision: 'rotation requested',
  status: 'in-progress',
  hubs: [],
  correlationId: 'c',
};
const post = (json: unknown) => request({ method: 'POST', url: 'http://localhost/api/keys/rotate', json });
const fields = (response: Awaited<ReturnType<ReturnType<typeof rotateKeyHandler>>>) =>
  (errorOf(response).details ?? []).map((d) => d.field).sort();

describe('rotateKey', () => {
  it('passes the parsed request to the rotator and answers 200 with its report', async () => {
    const rotate = vi.fn<Rotator['rotate']>(() => Promise.resolve(REPORT));
    const { context } = invocation('rotateKey');
    const response = await rotateKeyHandler(() => stubRotator({ rotate }))(
      post({ keyId: `${KEY_ID}/0123abcd`, dryRun: true, reason: '  drill  ', requestId: 'req-1' }),
      context,
    );
    expect(response).toMatchObject({ status: 200, jsonBody: REPORT });
    expect(rotate).toHaveBeenCalledWith(
      KEY,
      { dryRun: true, reason: 'drill', requestId: 'req-1' },
      expect.objectContaining({ correlationId: context.invocationId }),
    );
    await rotateKeyHandler(() => stubRotator({ rotate }))(post({ keyId: KEY_ID }), context);
    expect(rotate).toHaveBeenLastCalledWith(KEY, { dryRun: false }, expect.anything());
  });

  it.each([
    ['no body', undefined, ['body']],
    ['a body that is not JSON', '{"keyId":', ['body']],
    ['no keyId', {}, ['keyId']],
    ['a keyId that is not a key URL', { keyId: 'https://contoso.vault.azure.net/secrets/x' }, ['keyId']],
    ['a dryRun that is not a boolean', { keyId: KEY_ID, dryRun: 'yes' }, ['dryRun']],
    ['a reason that is too long', { keyId: KEY_ID, reason: 'x'.repeat(501) }, ['reason']],
    ['a malformed requestId', { keyId: KEY_ID, requestId: 'a b' }, ['requestId']],
    ['unknown fields, and several problems at once', { keyId: 42, force: true }, ['force', 'keyId']],
  ])('answers 400 naming the fields for %s', async (_what, body, named) => {
    const { context } = invocation('rotateKey');
    const req =
      typeof body === 'string'
        ? request({ method: 'POST', url: 'http://localhost/api/keys/rotate', body: { string: body } })
        : request({ method: 'POST', url: 'http://localhost/api/keys/rotate', ...(body ? { json: body } : {}) });
    const response = await rotateKeyHandler(() => stubRotator())(req, context);
    expect(response.status).toBe(400);
    expect(response.jsonBody).toMatchObject({ error: { code: 'INVALID_INPUT', invocationId: context.invocationId } });
    expect(fields(response)).toEqual(named);
  });
});

describe('syncKey, keyStatus, rotationHistory, reconcileNow', () => {
  it('sync: validates its body and passes dryRun', async () => {
    const sync = vi.fn<Rotator['sync']>(() => Promise.resolve(REPORT));
    const handler = syncKeyHandler(() => stubRotator({ sync }));
    const { context } = invocation('syncKey');
    expect((await handler(post({ keyId: KEY_ID, dryRun: false }), context)).status).toBe(200);
    expect(sync).toHaveBeenCalledWith(KEY, { dryRun: false }, expect.anything());
    const bad = await handler(post({ keyId: KEY_ID, reason: 'not for sync' }), context);
    expect(bad.status).toBe(400);
    expect(fields(bad)).toEqual(['reason']);
  });

  it('status: reads keyId from the query, refuses a missing or unknown parameter', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    const handler = keyStatusHandler(() => t.rotator);
    const { context } = invocation('keyStatus');
    const ok = await handler(request({ url: 'http://localhost/api/keys/status', query: { keyId: KEY_ID } }), context);
    expect(ok).toMatchObject({ status: 200, jsonBody: { keyId: KEY_ID, latestUsableVersion: v1.id } });
    const missing = await handler(request({ url: 'http://localhost/api/keys/status' }), context);
    expect(missing.status).toBe(400);
    expect(fields(missing)).toEqual(['keyId']);
    const extra = await handler(
      request({ url: 'http://localhost/api/keys/status', query: { keyId: KEY_ID, verbose: '1' } }),
      context,
    );
    expect(fields(extra)).toEqual(['verbose']);
  });

  it('history: bounds limit, passes the continuation token', async () => {
    const history = vi.fn(() => Promise.resolve({ records: [] }));
    const handler = rotationHistoryHandler(() => stubRotator({ history }));
    const { context } = invocation('rotationHistory');
    const get = (query: Record<string, string>) =>
      handler(request({ url: 'http://localhost/api/rotations', query }), context);
    expect((await get({ keyId: KEY_ID })).status).toBe(200);
    expect(history).toHaveBeenLastCalledWith(KEY, 50, undefined);
    await get({ keyId: KEY_ID, limit: '5', continuationToken: 'abc' });
    expect(history).toHaveBeenLastCalledWith(KEY, 5, 'abc');
    for (const limit of ['0', '1001', 'ten', '2.5']) {
      const response = await get({ keyId: KEY_ID, limit });
      expect(response.status).toBe(400);
      expect(fields(response)).toEqual(['limit']);
    }
  });

  it('reconcileNow answers with the reconciler’s report', async () => {
    const t = fakeRotator();
    const { context } = invocation('reconcileNow');
    const response = await reconcileNowHandler(() => t.rotator)(request({ method: 'POST' }), context);
    expect(response).toMatchObject({ status: 200, jsonBody: { correlationId: context.invocationId, keysScanned: 0 } });
  });
});

describe('jobStatus', () => {
  it('answers a job’s progress, 404 for a job never opened, 400 for a malformed id', async () => {
    const t = fakeRotator();
    t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v2.id);
    const { jobId } = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    const handler = jobStatusHandler(() => t.rotator);
    const get = (id: string) => handler(request({ url: `http://localhost/api/jobs/${id}`, params: { id } }), context);
    const { context } = invocation('jobStatus');

    expect(await get(jobId!)).toMatchObject({ status: 200, jsonBody: { jobId, progress: { queued: 1 } } });
    const unknown = await get(`contoso.vault.azure.net~hub-cmk~${'b'.repeat(32)}`);
    expect(unknown.status).toBe(404);
    expect(errorOf(unknown).code).toBe('JOB_NOT_FOUND');
    const malformed = await get('not-a-job');
    expect(malformed.status).toBe(400);
    expect(fields(malformed)).toEqual(['id']);
  });
});

describe('error answers', () => {
  const rejecting = (error: Error) => syncKeyHandler(() => stubRotator({ sync: () => Promise.reject(error) }));

  it.each([
    [new VaultNotAllowedError('https://evil.vault.azure.net'), 403],
    [new KeyNotFoundError('key x'), 404],
    [new JobNotFoundError('x'), 404],
    [new KeyUnusableError('x', ['disabled']), 409],
    [new UpstreamRejectedError('ACCESS_DENIED', 'no access'), 502],
    [new UpstreamRejectedError('HUB_UPDATE_FAILED', 'failed'), 502],
    [new HubKeyNotAppliedError('h', 'a', 'b'), 502],
  ])('maps %s to %i with its code and message', async (error, status) => {
    const { context } = invocation('syncKey');
    const response = await rejecting(error)(post({ keyId: KEY_ID }), context);
    expect(response.status).toBe(status);
    expect(errorOf(response)).toMatchObject({ code: error.code, message: error.message });
    expect(response.headers).toBeUndefined();
  });

  it.each([new UpstreamUnavailableError('ARM'), new ThrottledError('429', 5_000), new BusyError('Key k')])(
    'answers a transient %s with 503 and retry-after, and logs it',
    async (error) => {
      const { context, logs } = invocation('syncKey');
      const response = await rejecting(error)(post({ keyId: KEY_ID }), context);
      expect(response).toMatchObject({ status: 503, headers: { 'retry-after': '30' } });
      expect(errorOf(response).code).toBe(error.code);
      expect(logs).toContainEqual({ level: 'error', text: expect.stringContaining(error.code) });
    },
  );

  it('answers invalid settings (CONFIG_INVALID, raised when the services are first built) with a logged 500', async () => {
    const { context, logs } = invocation('syncKey');
    const handler = syncKeyHandler(() => {
      throw new ConfigInvalidError(['ROTATOR_ALLOWED_VAULTS: is required']);
    });
    const response = await handler(post({ keyId: KEY_ID }), context);
    expect(response.status).toBe(500);
    expect(errorOf(response)).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(errorOf(response).message).toContain('ROTATOR_ALLOWED_VAULTS');
    expect(logs).toContainEqual({ level: 'error', text: expect.stringMatching(/request\.failed.*CONFIG_INVALID/) });
  });

  it('answers an unexpected error with 500 INTERNAL, without its text, and logs it', async () => {
    const { context, logs } = invocation('syncKey');
    const response = await rejecting(new TypeError('connection string AccountKey=secret'))(
      post({ keyId: KEY_ID }),
      context,
    );
    expect(response.status).toBe(500);
    expect(errorOf(response).code).toBe('INTERNAL');
    expect(JSON.stringify(response.jsonBody)).not.toContain('secret');
    expect(logs.some((l) => l.level === 'error' && l.text.includes('request.failed'))).toBe(true);
    expect(logs.some((l) => l.text.includes('secret'))).toBe(false);
  });
});

describe('health', () => {
  it('answers 200 ok with valid settings and 503 misconfigured (no details) otherwise', async () => {
    expect(await healthHandler(() => ({}))()).toEqual({ status: 200, jsonBody: { status: 'ok' } });
    const failing = healthHandler(() => {
      throw new ConfigInvalidError(['AzureWebJobsStorage: is required']);
    });
    expect(await failing()).toEqual({ status: 503, jsonBody: { status: 'misconfigured' } });
  });
});

describe('listKeys', () => {
  it('answers 200 with the rotator’s key list, and a failure as its error', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('a'), v1.id);
    const { context } = invocation('listKeys');
    const response = await listKeysHandler(() => t.rotator)(request({}), context);
    expect(response.status).toBe(200);
    expect(response.jsonBody).toMatchObject({ keys: [{ keyId: KEY_ID, hubs: { current: 1 } }], problems: [] });
    const failing = stubRotator({ keys: () => Promise.reject(new UpstreamUnavailableError('ARM is unavailable')) });
    const unavailable = await listKeysHandler(() => failing)(request({}), context);
    expect(unavailable).toMatchObject({ status: 503, headers: { 'retry-after': '30' } });
  });
});

describe('dashboard', () => {
  it('serves the page as HTML that no frame, cache or referrer keeps', async () => {
    const { context } = invocation('dashboard');
    const response = await dashboardHandler(() => Promise.resolve('<!doctype html><title>t</title>'))(
      request({}),
      context,
    );
    expect(response).toMatchObject({
      status: 200,
      body: '<!doctype html><title>t</title>',
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'content-security-policy': "frame-ancestors 'none'",
      },
    });
  });

  it('answers 500 as JSON when the page cannot be read, without the file system’s text', async () => {
    const { context } = invocation('dashboard');
    const response = await dashboardHandler(() => Promise.reject(new Error('ENOENT: /home/site/wwwroot/x')))(
      request({}),
      context,
    );
    expect(response.status).toBe(500);
    expect(JSON.stringify(response.jsonBody)).not.toContain('wwwroot');
  });
});

describe('operator sign-in (ROTATOR_OPERATOR_AUTH=entra-id)', () => {
  const work = vi.fn(() => Promise.resolve({ status: 200, jsonBody: { ok: true } }));

  it('refuses a request App Service did not authenticate, before the handler runs', async () => {
    const { context, logs } = invocation('keyStatus');
    const response = await handled(work, { signIn: true })(request({ url: 'http://localhost/api/keys' }), context);
    expect(response.status).toBe(401);
    expect(errorOf(response).code).toBe('SIGN_IN_REQUIRED');
    expect(work).not.toHaveBeenCalled();
    expect(logs).toContainEqual({ level: 'warning', text: expect.stringContaining('request.unauthenticated') });
  });

  it('runs the handler for a principal App Service signed in, and needs none with function keys', async () => {
    const { context } = invocation('keyStatus');
    const signedIn = request({ headers: { 'x-ms-client-principal-id': '00000000-0000-0000-0000-0000000000aa' } });
    expect((await handled(work, { signIn: true })(signedIn, context)).status).toBe(200);
    expect((await handled(work, { signIn: false })(request({}), context)).status).toBe(200);
    expect(work).toHaveBeenCalledTimes(2);
  });
});
