// Contract tests of the Key Vault emulator with the unmodified @azure/keyvault-keys clients, over HTTPS through the
// CONNECT proxy with real host names (so the SDK's challenge-resource check runs as against Azure).
import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isRestError } from '@azure/core-rest-pipeline';
import type { RestError } from '@azure/core-rest-pipeline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueToken } from '../src/auth';
import { KeyUseError } from '../src/contracts';
import { parseKeyIdentifier } from '../src/keyvault';
import { DAY, VAULT, VAULT_URL, startBed } from './keyvaultBed';
import type { Bed } from './keyvaultBed';

async function restError(promise: Promise<unknown>): Promise<RestError> {
  try {
    await promise;
  } catch (error) {
    if (isRestError(error)) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

async function useError(promise: Promise<unknown>): Promise<KeyUseError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof KeyUseError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

const nowSeconds = (bed: Bed): number => Math.floor(bed.clock.now().getTime() / 1000);

describe('Key Vault emulator: keys API with the real KeyClient', () => {
  let bed: Bed;
  beforeAll(async () => {
    bed = await startBed({ pageSize: 3 });
  });
  afterAll(async () => {
    await bed.close();
  });

  it('challenges a request without a token the way the SDK expects', async () => {
    const res = await bed.raw('GET', '/keys?api-version=2025-07-01', { token: null });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(
      /^Bearer authorization="https:\/\/login\.microsoftonline\.com\/[0-9a-f-]+", resource="https:\/\/vault\.azure\.net"$/,
    );
    expect(res.json).toEqual({ error: { code: 'Unauthorized', message: expect.stringMatching(/Bearer/) as unknown } });
    // A token for another audience is refused too.
    const wrong = await bed.raw('GET', '/keys?api-version=2025-07-01', {
      token: issueToken('https://management.azure.com/'),
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBeDefined();
  });

  it('creates RSA keys with size, operations, attributes and tags; returns only the public JWK', async () => {
    const notBefore = new Date((nowSeconds(bed) - 60) * 1000);
    const expiresOn = new Date((nowSeconds(bed) + 365 * DAY) * 1000);
    const key = await bed.keyClient.createRsaKey('cmk-create', {
      keySize: 3072,
      keyOps: ['wrapKey', 'unwrapKey'],
      notBefore,
      expiresOn,
      tags: { purpose: 'iot' },
    });
    expect(key.id).toMatch(new RegExp(`^${VAULT_URL}/keys/cmk-create/[0-9a-f]{32}$`));
    expect(key.name).toBe('cmk-create');
    expect(key.keyType).toBe('RSA');
    expect(key.keyOperations).toEqual(['wrapKey', 'unwrapKey']);
    expect(key.key?.n?.length).toBe(384);
    expect(Buffer.from(key.key!.e!).toString('hex')).toBe('010001');
    expect(key.key?.d).toBeUndefined();
    expect(key.key?.p).toBeUndefined();
    expect(key.properties.enabled).toBe(true);
    expect(key.properties.notBefore).toEqual(notBefore);
    expect(key.properties.expiresOn).toEqual(expiresOn);
    expect(key.properties.tags).toEqual({ purpose: 'iot' });
    expect(key.properties.recoveryLevel).toBe('Recoverable+Purgeable');
    expect(key.properties.recoverableDays).toBe(90);
    expect(Math.abs(key.properties.createdOn!.getTime() - bed.clock.now().getTime())).toBeLessThan(5000);

    const defaults = await bed.keyClient.createKey('cmk-defaults', 'RSA-HSM');
    expect(defaults.keyType).toBe('RSA-HSM');
    expect(defaults.key?.n?.length).toBe(256);
    expect(defaults.keyOperations).toEqual(['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey']);
    expect(defaults.properties.tags).toBeUndefined();

    const big = await bed.keyClient.createRsaKey('cmk-4096', { keySize: 4096 });
    expect(big.key?.n?.length).toBe(512);

    const ec = await bed.keyClient.createEcKey('ec-key', { curve: 'P-384' });
    expect(ec.keyType).toBe('EC');
    expect(ec.key?.crv).toBe('P-384');
    expect(ec.key?.x?.length).toBe(48);
    expect(ec.key?.d).toBeUndefined();
  });

  it('refuses bad create parameters with BadParameter', async () => {
    const size = await restError(bed.keyClient.createRsaKey('bad-size', { keySize: 1024 }));
    expect(size.statusCode).toBe(400);
    expect(size.code).toBe('BadParameter');
    const ops = await restError(bed.keyClient.createRsaKey('bad-ops', { keyOps: ['launch'] }));
    expect(ops.code).toBe('BadParameter');
    const name = await bed.raw('POST', '/keys/bad_name/create?api-version=2025-07-01', { body: { kty: 'RSA' } });
    expect(name.status).toBe(400);
  });

  it('gets the latest version and any version by id', async () => {
    const first = await bed.keyClient.createRsaKey('cmk-get');
    const second = await bed.keyClient.createRsaKey('cmk-get');
    expect(second.properties.version).not.toBe(first.properties.version);
    const latest = await bed.keyClient.getKey('cmk-get');
    expect(latest.id).toBe(second.id);
    expect(latest.key?.n).toEqual(second.key?.n);
    const older = await bed.keyClient.getKey('cmk-get', { version: first.properties.version! });
    expect(older.id).toBe(first.id);
    expect(older.key?.n).toEqual(first.key?.n);
    // Names are case-insensitive, as in Key Vault.
    expect((await bed.keyClient.getKey('CMK-GET')).id).toBe(second.id);
  });

  it('lists keys and versions in pages, following nextLink and honouring maxresults', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await bed.keyClient.createRsaKey('cmk-paged')).id!);

    const versions: string[] = [];
    for await (const v of bed.keyClient.listPropertiesOfKeyVersions('cmk-paged')) versions.push(v.id!);
    expect(versions).toEqual(ids); // 5 versions over pages of the emulator's default size (3)

    const pageSizes: number[] = [];
    const paged: string[] = [];
    for await (const p of bed.keyClient.listPropertiesOfKeyVersions('cmk-paged').byPage({ maxPageSize: 2 })) {
      pageSizes.push(p.length);
      paged.push(...p.map((v) => v.id!));
    }
    expect(pageSizes).toEqual([2, 2, 1]);
    expect(paged).toEqual(ids);

    const raw = await bed.raw('GET', '/keys/cmk-paged/versions?api-version=2025-07-01&maxresults=4');
    expect((raw.json?.value as unknown[]).length).toBe(4);
    expect(raw.json?.nextLink).toMatch(
      /^https:\/\/demo\.vault\.azure\.net\/keys\/cmk-paged\/versions\?api-version=2025-07-01&\$skiptoken=[\w-]+&maxresults=4$/,
    );
    const tooMany = await bed.raw('GET', '/keys/cmk-paged/versions?api-version=2025-07-01&maxresults=26');
    expect(tooMany.status).toBe(400);

    const names: string[] = [];
    for await (const k of bed.keyClient.listPropertiesOfKeys()) names.push(k.name);
    expect(names).toEqual(expect.arrayContaining(['cmk-create', 'cmk-get', 'cmk-paged']));
    const keyItem = (await bed.raw('GET', '/keys?api-version=7.5&maxresults=25')).json?.value as { kid: string }[];
    expect(keyItem.map((k) => k.kid)).toContain(`${VAULT_URL}/keys/cmk-paged`); // unversioned in the key list
  });

  it('updates the properties of the latest or a given version', async () => {
    const first = await bed.keyClient.createRsaKey('cmk-update', { tags: { a: '1' } });
    const second = await bed.keyClient.createRsaKey('cmk-update');
    const expiresOn = new Date((nowSeconds(bed) + 90 * DAY) * 1000);
    const updated = await bed.keyClient.updateKeyProperties('cmk-update', first.properties.version!, {
      enabled: false,
      expiresOn,
      tags: { a: '2', b: 'x' },
      keyOps: ['unwrapKey'],
    });
    expect(updated.id).toBe(first.id);
    expect(updated.properties.enabled).toBe(false);
    expect(updated.properties.expiresOn).toEqual(expiresOn);
    expect(updated.properties.tags).toEqual({ a: '2', b: 'x' });
    expect(updated.keyOperations).toEqual(['unwrapKey']);
    expect((await bed.keyClient.getKey('cmk-update')).properties.enabled).toBe(true);

    const latest = await bed.keyClient.updateKeyProperties('cmk-update', { tags: { latest: 'yes' } });
    expect(latest.id).toBe(second.id);
    expect(latest.properties.tags).toEqual({ latest: 'yes' });
    expect((await bed.keyClient.getKey('cmk-update', { version: first.properties.version! })).properties.enabled).toBe(
      false,
    );
  });

  it('keeps rotation policies and rotates with the policy expiry', async () => {
    await bed.keyClient.createRsaKey('cmk-rotate', {
      keySize: 3072,
      keyOps: ['wrapKey', 'unwrapKey'],
      tags: { t: '1' },
    });
    const fallback = await bed.keyClient.getKeyRotationPolicy('cmk-rotate');
    expect(fallback.id).toBe(`${VAULT_URL}/keys/cmk-rotate/rotationpolicy`);
    expect(fallback.lifetimeActions).toEqual([
      { action: 'Notify', timeBeforeExpiry: 'P30D', timeAfterCreate: undefined },
    ]);

    const set = await bed.keyClient.updateKeyRotationPolicy('cmk-rotate', {
      expiresIn: 'P90D',
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P60D' },
        { action: 'Notify', timeBeforeExpiry: 'P14D' },
      ],
    });
    expect(set.expiresIn).toBe('P90D');
    expect(set.createdOn).toBeInstanceOf(Date);
    const got = await bed.keyClient.getKeyRotationPolicy('cmk-rotate');
    expect(got.expiresIn).toBe('P90D');
    expect(got.lifetimeActions).toEqual([
      { action: 'Rotate', timeAfterCreate: 'P60D', timeBeforeExpiry: undefined },
      { action: 'Notify', timeBeforeExpiry: 'P14D', timeAfterCreate: undefined },
    ]);

    const rotated = await bed.keyClient.rotateKey('cmk-rotate');
    expect(rotated.key?.n?.length).toBe(384);
    expect(rotated.keyOperations).toEqual(['wrapKey', 'unwrapKey']);
    expect(rotated.properties.tags).toEqual({ t: '1' });
    expect(rotated.properties.expiresOn!.getTime() - rotated.properties.createdOn!.getTime()).toBe(90 * DAY * 1000);
    expect((await bed.keyClient.getKey('cmk-rotate')).id).toBe(rotated.id);

    const tooShort = await restError(bed.keyClient.updateKeyRotationPolicy('cmk-rotate', { expiresIn: 'P10D' }));
    expect(tooShort.statusCode).toBe(400);
    expect(tooShort.code).toBe('BadParameter');
    const notDuration = await restError(
      bed.keyClient.updateKeyRotationPolicy('cmk-rotate', {
        lifetimeActions: [{ action: 'Rotate', timeAfterCreate: '60 days' }],
      }),
    );
    expect(notDuration.code).toBe('BadParameter');
    expect((await restError(bed.keyClient.rotateKey('no-such-key'))).statusCode).toBe(404);
    expect((await restError(bed.keyClient.getKeyRotationPolicy('no-such-key'))).code).toBe('KeyNotFound');
  });

  it('wraps and unwraps with RSA-OAEP, RSA-OAEP-256 and RSA1_5 (real RSA)', async () => {
    const key = await bed.keyClient.createRsaKey('cmk-crypto');
    const crypto = bed.cryptoClient(key.id!);
    const dek = Buffer.from('0123456789abcdef0123456789abcdef');
    for (const alg of ['RSA-OAEP', 'RSA-OAEP-256', 'RSA1_5'] as const) {
      const wrapped = await crypto.wrapKey(alg, dek);
      expect(wrapped.result.length).toBe(256);
      const unwrapped = await crypto.unwrapKey(alg, wrapped.result);
      expect(Buffer.from(unwrapped.result)).toEqual(dek);
      expect(unwrapped.keyID).toBe(key.id);
    }
    // What the public key wraps locally (as any Azure service would) the vault unwraps.
    const jwk = {
      kty: 'RSA',
      n: Buffer.from(key.key!.n!).toString('base64url'),
      e: Buffer.from(key.key!.e!).toString('base64url'),
    };
    const local = publicEncrypt(
      {
        key: createPublicKey({ key: jwk, format: 'jwk' }),
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
      },
      dek,
    );
    expect(Buffer.from((await crypto.unwrapKey('RSA-OAEP-256', local)).result)).toEqual(dek);
    // Server-side wrap (the SDK wraps RSA-OAEP locally once it has the public key, so ask the REST API directly).
    const res = await bed.raw('POST', `/keys/cmk-crypto/${key.properties.version!}/wrapkey?api-version=2025-07-01`, {
      body: { alg: 'RSA-OAEP', value: dek.toString('base64url') },
    });
    expect(res.status).toBe(200);
    expect(res.json?.kid).toBe(key.id);
    const serverWrapped = Buffer.from(res.json?.value as string, 'base64url');
    expect(Buffer.from((await crypto.unwrapKey('RSA-OAEP', serverWrapped)).result)).toEqual(dek);
    // A versionless path uses the latest version.
    const latestPath = await bed.raw('POST', '/keys/cmk-crypto/unwrapkey?api-version=2025-07-01', {
      body: { alg: 'RSA-OAEP', value: serverWrapped.toString('base64url') },
    });
    expect(Buffer.from(latestPath.json?.value as string, 'base64url')).toEqual(dek);
    const garbage = await restError(crypto.unwrapKey('RSA-OAEP', Buffer.alloc(256, 7)));
    expect(garbage.statusCode).toBe(400);
    expect(garbage.code).toBe('BadParameter');
  });

  it('refuses a disabled version, a missing key operation and (for wrap) an out-of-window version', async () => {
    const dek = Buffer.alloc(32, 1);
    const key = await bed.keyClient.createRsaKey('cmk-refuse');
    const crypto = bed.cryptoClient(key.id!);
    const wrapped = (await crypto.wrapKey('RSA-OAEP-256', dek)).result;
    await bed.keyClient.updateKeyProperties('cmk-refuse', key.properties.version!, { enabled: false });
    const disabled = await restError(bed.cryptoClient(key.id!).unwrapKey('RSA-OAEP-256', wrapped));
    expect(disabled.statusCode).toBe(403);
    expect(disabled.code).toBe('Forbidden');
    expect(disabled.message).toMatch(/disabled/);
    expect((disabled.details as { error: { innerError: { code: string } } }).error.innerError.code).toBe('KeyDisabled');
    const disabledWrap = await restError(bed.cryptoClient(key.id!).wrapKey('RSA-OAEP-256', dek));
    expect(disabledWrap.statusCode).toBe(403);

    // key_ops without wrapKey: the SDK checks key_ops itself before calling, so ask the REST API directly.
    const unwrapOnly = await bed.keyClient.createRsaKey('cmk-unwrap-only', { keyOps: ['unwrapKey'] });
    const noOp = await bed.raw(
      'POST',
      `/keys/cmk-unwrap-only/${unwrapOnly.properties.version!}/wrapkey?api-version=2025-07-01`,
      {
        body: { alg: 'RSA-OAEP', value: dek.toString('base64url') },
      },
    );
    expect(noOp.status).toBe(403);
    expect(noOp.json).toEqual({
      error: {
        code: 'Forbidden',
        message: 'Operation wrapKey is not permitted on this key.',
        innererror: { code: 'KeyOperationForbidden' },
      },
    });

    const future = await bed.keyClient.createRsaKey('cmk-future', {
      notBefore: new Date((nowSeconds(bed) + 10 * DAY) * 1000),
    });
    const early = await bed.raw(
      'POST',
      `/keys/cmk-future/${future.properties.version!}/wrapkey?api-version=2025-07-01`,
      {
        body: { alg: 'RSA-OAEP-256', value: dek.toString('base64url') },
      },
    );
    expect(early.status).toBe(403);
    expect((early.json?.error as { innererror: { code: string } }).innererror.code).toBe('KeyNotYetValid');
  });

  it('answers errors in Key Vault shape: KeyNotFound, missing api-version, unknown vault', async () => {
    const missing = await restError(bed.keyClient.getKey('does-not-exist'));
    expect(missing.statusCode).toBe(404);
    expect(missing.code).toBe('KeyNotFound');
    expect(missing.message).toMatch(/A key with \(name\/id\) does-not-exist was not found in this key vault/);
    const key = await bed.keyClient.createRsaKey('cmk-errors');
    const badVersion = await restError(bed.keyClient.getKey('cmk-errors', { version: '0'.repeat(32) }));
    expect(badVersion.code).toBe('KeyNotFound');
    expect(
      (
        await restError(
          bed.cryptoClient(`${VAULT_URL}/keys/cmk-errors/${'1'.repeat(32)}`).unwrapKey('RSA-OAEP', Buffer.alloc(256)),
        )
      ).statusCode,
    ).toBe(404);
    expect(key.id).toBeDefined();

    const noVersion = await bed.raw('GET', '/keys/cmk-errors');
    expect(noVersion.status).toBe(400);
    expect((noVersion.json?.error as { code: string }).code).toBe('BadParameter');
    const oldVersion = await bed.raw('GET', '/keys/cmk-errors?api-version=7.5');
    expect(oldVersion.status).toBe(200);
    const bogusVersion = await bed.raw('GET', '/keys/cmk-errors?api-version=banana');
    expect(bogusVersion.status).toBe(400);
    const otherVault = await bed.raw('GET', '/keys?api-version=2025-07-01', { host: 'other.vault.azure.net' });
    expect(otherVault.status).toBe(404);
  });

  it('deletes, recovers and purges keys (soft delete)', async () => {
    await bed.keyClient.createRsaKey('cmk-delete');
    const poller = await bed.keyClient.beginDeleteKey('cmk-delete', { intervalInMs: 10 });
    const deleted = await poller.pollUntilDone();
    expect(deleted.properties.recoveryId).toBe(`${VAULT_URL}/deletedkeys/cmk-delete`);
    expect((await restError(bed.keyClient.getKey('cmk-delete'))).statusCode).toBe(404);
    expect((await restError(bed.keyClient.createRsaKey('cmk-delete'))).statusCode).toBe(409);
    const names: string[] = [];
    for await (const k of bed.keyClient.listDeletedKeys()) names.push(k.name);
    expect(names).toContain('cmk-delete');
    await (await bed.keyClient.beginRecoverDeletedKey('cmk-delete', { intervalInMs: 10 })).pollUntilDone();
    expect((await bed.keyClient.getKey('cmk-delete')).name).toBe('cmk-delete');
    await (await bed.keyClient.beginDeleteKey('cmk-delete', { intervalInMs: 10 })).pollUntilDone();
    await bed.keyClient.purgeDeletedKey('cmk-delete');
    expect((await bed.keyClient.createRsaKey('cmk-delete')).name).toBe('cmk-delete');
  });
});

describe('Key Vault emulator: in-process crypto for the emulated hubs', () => {
  let bed: Bed;
  beforeAll(async () => {
    bed = await startBed();
  });
  afterAll(async () => {
    await bed.close();
  });

  it('wraps and unwraps by key identifier, interoperable with the REST API', async () => {
    const key = await bed.keyClient.createRsaKey('hub-cmk', {
      expiresOn: new Date((nowSeconds(bed) + 30 * DAY) * 1000),
    });
    const dek = Buffer.alloc(32, 9);
    const wrapped = await bed.kv.crypto.wrapKey(key.id!, dek);
    expect(await bed.kv.crypto.unwrapKey(key.id!, wrapped)).toEqual(dek);
    expect(Buffer.from((await bed.cryptoClient(key.id!).unwrapKey('RSA-OAEP-256', wrapped)).result)).toEqual(dek);
    expect(parseKeyIdentifier(key.id!)).toEqual({ vault: VAULT, name: 'hub-cmk', version: key.properties.version });

    // Past exp: wrapping is refused, unwrapping still works (Key Vault keeps data written under a valid key readable).
    await bed.kv.admin.advanceClock(31 * DAY);
    expect((await useError(bed.kv.crypto.wrapKey(key.id!, dek))).code).toBe('KeyExpired');
    expect(await bed.kv.crypto.unwrapKey(key.id!, wrapped)).toEqual(dek);

    await bed.keyClient.updateKeyProperties('hub-cmk', key.properties.version!, { enabled: false });
    expect((await useError(bed.kv.crypto.unwrapKey(key.id!, wrapped))).code).toBe('KeyDisabled');
    expect((await useError(bed.kv.crypto.wrapKey(`${VAULT_URL}/keys/nope/${'a'.repeat(32)}`, dek))).code).toBe(
      'KeyNotFound',
    );
    expect((await useError(bed.kv.crypto.wrapKey('https://elsewhere.example.com/keys/x', dek))).code).toBe(
      'BadParameter',
    );

    const signOnly = await bed.keyClient.createRsaKey('hub-sign-only', { keyOps: ['sign'] });
    expect((await useError(bed.kv.crypto.wrapKey(signOnly.id!, dek))).code).toBe('OperationNotAllowed');
    const future = await bed.keyClient.createRsaKey('hub-future', {
      notBefore: new Date((nowSeconds(bed) + DAY) * 1000),
    });
    expect((await useError(bed.kv.crypto.wrapKey(future.id!, dek))).code).toBe('KeyNotYetValid');
  });

  it('can be made stricter than Azure: no unwrap outside the validity window', async () => {
    const strict = await startBed({ enforceValidityOnUnwrap: true });
    try {
      const key = await strict.keyClient.createRsaKey('strict', {
        expiresOn: new Date((nowSeconds(strict) + DAY) * 1000),
      });
      const wrapped = await strict.kv.crypto.wrapKey(key.id!, Buffer.alloc(16, 1));
      await strict.kv.admin.advanceClock(2 * DAY);
      expect((await useError(strict.kv.crypto.unwrapKey(key.id!, wrapped))).code).toBe('KeyExpired');
    } finally {
      await strict.close();
    }
  });
});

describe('Key Vault emulator: Event Grid events', () => {
  let bed: Bed;
  beforeAll(async () => {
    bed = await startBed({ subscriptionId: 'sub-1', resourceGroup: 'rg-keys' });
  });
  afterAll(async () => {
    await bed.close();
  });

  it('publishes KeyNewVersionCreated for every new version, in the EventGridEvent schema', async () => {
    const exp = nowSeconds(bed) + 200 * DAY;
    const created = await bed.keyClient.createRsaKey('evt-key', { expiresOn: new Date(exp * 1000) });
    const [event] = bed.sink.ofType('KeyNewVersionCreated');
    expect(event).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown,
      topic: '/subscriptions/sub-1/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/demo',
      subject: 'evt-key',
      eventType: 'Microsoft.KeyVault.KeyNewVersionCreated',
      eventTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown,
      data: {
        Id: created.id,
        VaultName: 'demo',
        ObjectType: 'Key',
        ObjectName: 'evt-key',
        Version: created.properties.version,
        NBF: null,
        EXP: exp,
      },
      dataVersion: '1',
      metadataVersion: '1',
    });
    await bed.keyClient.updateKeyRotationPolicy('evt-key', { expiresIn: 'P60D' });
    const rotated = await bed.keyClient.rotateKey('evt-key');
    const events = bed.sink.ofType('KeyNewVersionCreated');
    expect(events).toHaveLength(2);
    expect(events[1]?.data.Version).toBe(rotated.properties.version);
    expect(events[1]?.data.EXP).toBe(Math.floor(rotated.properties.expiresOn!.getTime() / 1000));
  });

  it('publishes KeyNearExpiry once when the clock enters the notify window, then KeyExpired at exp', async () => {
    const exp = nowSeconds(bed) + 40 * DAY;
    const key = await bed.keyClient.createRsaKey('evt-expiry', { expiresOn: new Date(exp * 1000) });
    await bed.kv.admin.advanceClock(5 * DAY); // 35 days left: outside the default 30-day window
    expect(bed.sink.ofType('KeyNearExpiry').filter((e) => e.subject === 'evt-expiry')).toHaveLength(0);
    await bed.kv.admin.advanceClock(6 * DAY); // 29 days left
    const near = bed.sink.ofType('KeyNearExpiry').filter((e) => e.subject === 'evt-expiry');
    expect(near).toHaveLength(1);
    expect(near[0]?.data).toMatchObject({ Id: key.id, Version: key.properties.version, EXP: exp, ObjectType: 'Key' });
    await bed.kv.admin.advanceClock(DAY);
    await bed.kv.admin.checkExpiry();
    expect(bed.sink.ofType('KeyNearExpiry').filter((e) => e.subject === 'evt-expiry')).toHaveLength(1);
    expect(bed.sink.ofType('KeyExpired').filter((e) => e.subject === 'evt-expiry')).toHaveLength(0);
    await bed.kv.admin.advanceClock(29 * DAY);
    const expired = bed.sink.ofType('KeyExpired').filter((e) => e.subject === 'evt-expiry');
    expect(expired).toHaveLength(1);
    expect(expired[0]?.data.Id).toBe(key.id);
    await bed.kv.admin.advanceClock(DAY);
    expect(bed.sink.ofType('KeyExpired').filter((e) => e.subject === 'evt-expiry')).toHaveLength(1);
  });

  it('uses the Notify action of the rotation policy for the window, and watches the current version only', async () => {
    const exp = nowSeconds(bed) + 20 * DAY;
    const old = await bed.keyClient.createRsaKey('evt-policy', { expiresOn: new Date(exp * 1000) });
    await bed.keyClient.updateKeyRotationPolicy('evt-policy', {
      expiresIn: 'P90D',
      lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P10D' }],
    });
    await bed.kv.admin.advanceClock(9 * DAY); // 11 days left: outside the 10-day window
    expect(bed.sink.ofType('KeyNearExpiry').filter((e) => e.subject === 'evt-policy')).toHaveLength(0);
    await bed.kv.admin.advanceClock(2 * DAY);
    expect(bed.sink.ofType('KeyNearExpiry').filter((e) => e.subject === 'evt-policy')).toHaveLength(1);
    const fresh = await bed.keyClient.rotateKey('evt-policy');
    await bed.kv.admin.advanceClock(10 * DAY); // the old version expires, but it is no longer the current one
    expect(bed.sink.ofType('KeyExpired').filter((e) => e.data.Version === old.properties.version)).toHaveLength(0);
    expect(fresh.properties.expiresOn).toBeDefined();
  });

  it('rotates by itself when the policy has a due Rotate action', async () => {
    await bed.keyClient.createRsaKey('evt-auto');
    await bed.keyClient.updateKeyRotationPolicy('evt-auto', {
      expiresIn: 'P60D',
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P30D' }],
    });
    const before = bed.sink.ofType('KeyNewVersionCreated').filter((e) => e.subject === 'evt-auto').length;
    await bed.kv.admin.advanceClock(31 * DAY);
    const after = bed.sink.ofType('KeyNewVersionCreated').filter((e) => e.subject === 'evt-auto');
    expect(after).toHaveLength(before + 1);
    const current = await bed.keyClient.getKey('evt-auto');
    expect(current.properties.version).toBe(after[after.length - 1]?.data.Version);
    expect(current.properties.expiresOn!.getTime() - current.properties.createdOn!.getTime()).toBe(60 * DAY * 1000);
  });

  it('serves the admin endpoints outside the Key Vault paths', async () => {
    const clock = await bed.raw('GET', '/_admin/clock', { token: null });
    expect(clock.status).toBe(200);
    const before = clock.json?.epochSeconds as number;
    const advanced = await bed.raw('POST', '/_admin/clock/advance', { body: { seconds: 3600 }, token: null });
    expect(advanced.json?.epochSeconds).toBeGreaterThanOrEqual(before + 3600);
    const events = await bed.raw('GET', '/_admin/events?eventType=Microsoft.KeyVault.KeyExpired', { token: null });
    expect((events.json?.value as unknown[]).length).toBe(bed.sink.ofType('KeyExpired').length);
    expect((await bed.raw('POST', '/_admin/clock/advance', { body: { seconds: -1 }, token: null })).status).toBe(400);
    expect((await bed.raw('POST', '/_admin/reset', { token: null })).status).toBe(204);
    expect(bed.kv.admin.events()).toHaveLength(0);
    expect((await restError(bed.keyClient.getKey('evt-key'))).statusCode).toBe(404);
  });
});

describe('Key Vault emulator: expiry timer', () => {
  it('notices expiry on its own timer, without a clock advance', async () => {
    const bed = await startBed({ expiryCheckIntervalMs: 100 });
    try {
      const key = await bed.keyClient.createRsaKey('timer-key', { expiresOn: new Date((nowSeconds(bed) + 1) * 1000) });
      const deadline = Date.now() + 5000;
      while (bed.sink.ofType('KeyExpired').length === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(bed.sink.ofType('KeyExpired').map((e) => e.data.Id)).toEqual([key.id]);
      expect(bed.sink.ofType('KeyNearExpiry').map((e) => e.data.Id)).toEqual([key.id]);
    } finally {
      await bed.close();
    }
  });
});

describe('Key Vault emulator: state file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kv-state-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps keys, versions, policies and sent notifications across a restart', async () => {
    const stateFile = path.join(dir, 'keyvault.json');
    const bed = await startBed({ stateFile });
    try {
      const exp = nowSeconds(bed) + 20 * DAY;
      const v1 = await bed.keyClient.createRsaKey('persisted', { expiresOn: new Date(exp * 1000) });
      await bed.keyClient.updateKeyRotationPolicy('persisted', { expiresIn: 'P90D' });
      const dek = Buffer.alloc(32, 5);
      const wrapped = (await bed.cryptoClient(v1.id!).wrapKey('RSA-OAEP-256', dek)).result;
      await bed.kv.admin.checkExpiry(); // 20 days left: near expiry fires now, before the restart
      expect(bed.sink.ofType('KeyNearExpiry')).toHaveLength(1);
      const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as { formatVersion: number };
      expect(saved.formatVersion).toBe(1);

      await bed.restart();
      const again = await bed.keyClient.getKey('persisted');
      expect(again.id).toBe(v1.id);
      expect(again.key?.n).toEqual(v1.key?.n);
      expect(Buffer.from((await bed.cryptoClient(v1.id!).unwrapKey('RSA-OAEP-256', wrapped)).result)).toEqual(dek);
      expect((await bed.keyClient.getKeyRotationPolicy('persisted')).expiresIn).toBe('P90D');
      await bed.kv.admin.checkExpiry();
      expect(bed.sink.ofType('KeyNearExpiry')).toHaveLength(1); // not sent twice
      expect(bed.kv.admin.events().filter((e) => e.eventType === 'Microsoft.KeyVault.KeyNearExpiry')).toHaveLength(1);
    } finally {
      await bed.close();
    }
  });
});
