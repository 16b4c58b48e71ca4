// The lifecycle routes as the host calls them: the parsed request reaches the rotator, bad input is answered 400
// naming the fields (before any use case runs), and a revoke or restore without the key's name is refused.
import { describe, expect, it, vi } from 'vitest';
import { keyImpactHandler } from '../../functions/keyImpact';
import { restoreKeyHandler } from '../../functions/restoreKey';
import { retireVersionsHandler } from '../../functions/retireVersions';
import { revokeKeyHandler } from '../../functions/revokeKey';
import { NotRevokedError } from '../../src/domain/errors';
import type { ImpactReport, RestoreReport, RetireReport, RevokeReport, Rotator } from '../../src/application';
import { KEY, VAULT } from '../fakes/rotator';
import { errorOf, invocation, request, stubRotator } from './helpers';

const KEY_ID = `${VAULT}/keys/hub-cmk`;
const post = (route: string, json?: unknown) =>
  request({ method: 'POST', url: `http://localhost/api/keys/${route}`, ...(json === undefined ? {} : { json }) });
const get = (query: string) => request({ method: 'GET', url: `http://localhost/api/keys/impact?${query}` });
const fieldsOf = (response: { jsonBody?: unknown }) => (errorOf(response).details ?? []).map((d) => d.field).sort();

async function expect400(response: Promise<{ status?: number; jsonBody?: unknown }>, fields: string[]) {
  const answer = await response;
  expect(answer.status).toBe(400);
  expect(errorOf(answer).code).toBe('INVALID_INPUT');
  expect(fieldsOf(answer)).toEqual(fields);
}

describe('retireVersions', () => {
  it('passes keyId, dryRun and graceDays to the rotator', async () => {
    const retire = vi.fn<Rotator['retire']>(() => Promise.resolve({ retired: [] } as unknown as RetireReport));
    const { context } = invocation();
    const response = await retireVersionsHandler(() => stubRotator({ retire }))(
      post('retire', { keyId: `${KEY_ID}/abc123`, dryRun: true, graceDays: 0 }),
      context,
    );
    expect(response.status).toBe(200);
    expect(retire).toHaveBeenCalledWith(KEY, { dryRun: true, graceDays: 0 }, expect.anything());
    await retireVersionsHandler(() => stubRotator({ retire }))(post('retire', { keyId: KEY_ID }), context);
    expect(retire).toHaveBeenLastCalledWith(KEY, { dryRun: false }, expect.anything());
  });

  it.each([
    ['no keyId', {}, ['keyId']],
    ['a negative graceDays', { keyId: KEY_ID, graceDays: -1 }, ['graceDays']],
    ['a fractional graceDays', { keyId: KEY_ID, graceDays: 1.5 }, ['graceDays']],
    ['graceDays as text', { keyId: KEY_ID, graceDays: '7' }, ['graceDays']],
    [
      'a dryRun that is not a boolean, and an unknown field',
      { keyId: KEY_ID, dryRun: 1, force: true },
      ['dryRun', 'force'],
    ],
  ])('answers 400 naming the fields for %s', async (_what, body, fields) => {
    await expect400(retireVersionsHandler(() => stubRotator())(post('retire', body), invocation().context), fields);
  });
});

describe('keyImpact', () => {
  const REPORT: ImpactReport = { keyId: KEY_ID, hubs: [], unaffected: [] };

  it('takes the version from the keyId or from `version`', async () => {
    const impact = vi.fn<Rotator['impact']>(() => Promise.resolve(REPORT));
    const handler = keyImpactHandler(() => stubRotator({ impact }));
    expect((await handler(get(`keyId=${encodeURIComponent(KEY_ID)}`), invocation().context)).status).toBe(200);
    expect(impact).toHaveBeenLastCalledWith(KEY, undefined);
    await handler(get(`keyId=${encodeURIComponent(`${KEY_ID}/abc123`)}`), invocation().context);
    expect(impact).toHaveBeenLastCalledWith(KEY, 'abc123');
    await handler(get(`keyId=${encodeURIComponent(KEY_ID)}&version=def456`), invocation().context);
    expect(impact).toHaveBeenLastCalledWith(KEY, 'def456');
  });

  it.each([
    ['no keyId', '', ['keyId']],
    ['a malformed version', `keyId=${encodeURIComponent(KEY_ID)}&version=not-a-version`, ['version']],
    [
      'a version that contradicts the keyId’s',
      `keyId=${encodeURIComponent(`${KEY_ID}/abc123`)}&version=def456`,
      ['version'],
    ],
    ['an unknown parameter', `keyId=${encodeURIComponent(KEY_ID)}&all=1`, ['all']],
  ])('answers 400 naming the fields for %s', async (_what, query, fields) => {
    await expect400(keyImpactHandler(() => stubRotator())(get(query), invocation().context), fields);
  });
});

describe('revokeKey', () => {
  it('is a dry run unless told otherwise, and a real one carries the confirmation', async () => {
    const revoke = vi.fn<Rotator['revoke']>(() => Promise.resolve({ status: 'planned' } as RevokeReport));
    const handler = revokeKeyHandler(() => stubRotator({ revoke }));
    expect((await handler(post('revoke', { keyId: KEY_ID }), invocation().context)).status).toBe(200);
    expect(revoke).toHaveBeenLastCalledWith(KEY, { dryRun: true }, expect.anything());
    await handler(
      post('revoke', { keyId: KEY_ID, version: 'abc123', dryRun: false, confirm: 'hub-cmk' }),
      invocation().context,
    );
    expect(revoke).toHaveBeenLastCalledWith(
      KEY,
      { dryRun: false, version: 'abc123', confirm: 'hub-cmk' },
      expect.anything(),
    );
  });

  it.each([
    ['a real revoke without confirm', { keyId: KEY_ID, dryRun: false }, ['confirm']],
    ['a real revoke confirming another name', { keyId: KEY_ID, dryRun: false, confirm: 'other-cmk' }, ['confirm']],
    ['a confirm that is not a string', { keyId: KEY_ID, dryRun: false, confirm: 42 }, ['confirm']],
    ['a malformed version', { keyId: KEY_ID, version: 'v/1' }, ['version']],
    ['no keyId', { dryRun: false, confirm: 'hub-cmk' }, ['keyId']],
  ])('answers 400 naming the fields for %s (the rotator is not called)', async (_what, body, fields) => {
    await expect400(revokeKeyHandler(() => stubRotator())(post('revoke', body), invocation().context), fields);
  });

  it('says which name to type', async () => {
    const response = await revokeKeyHandler(() => stubRotator())(
      post('revoke', { keyId: KEY_ID, dryRun: false }),
      invocation().context,
    );
    expect(errorOf(response).message).toBe(`confirm: is required for a real change: the key's name ("hub-cmk")`);
  });
});

describe('restoreKey', () => {
  it('passes the confirmation; a dry run needs none', async () => {
    const restore = vi.fn<Rotator['restore']>(() => Promise.resolve({ status: 'planned' } as RestoreReport));
    const handler = restoreKeyHandler(() => stubRotator({ restore }));
    await handler(post('restore', { keyId: KEY_ID, dryRun: true }), invocation().context);
    expect(restore).toHaveBeenLastCalledWith(KEY, { dryRun: true }, expect.anything());
    await handler(post('restore', { keyId: KEY_ID, confirm: 'hub-cmk' }), invocation().context);
    expect(restore).toHaveBeenLastCalledWith(KEY, { dryRun: false, confirm: 'hub-cmk' }, expect.anything());
  });

  it.each([
    ['no confirm', { keyId: KEY_ID }, ['confirm']],
    ['another key’s name', { keyId: KEY_ID, confirm: 'HUB-CMK' }, ['confirm']],
    ['an unknown field', { keyId: KEY_ID, confirm: 'hub-cmk', versions: ['a'] }, ['versions']],
  ])('answers 400 naming the fields for %s', async (_what, body, fields) => {
    await expect400(restoreKeyHandler(() => stubRotator())(post('restore', body), invocation().context), fields);
  });

  it('answers 409 when there is nothing to restore', async () => {
    const restore = vi.fn<Rotator['restore']>(() => Promise.reject(new NotRevokedError(KEY_ID)));
    const response = await restoreKeyHandler(() => stubRotator({ restore }))(
      post('restore', { keyId: KEY_ID, confirm: 'hub-cmk' }),
      invocation().context,
    );
    expect(response.status).toBe(409);
    expect(errorOf(response).code).toBe('NOT_REVOKED');
  });
});
