// The rotation service end to end: Key Vault raises an event, Event Grid delivers it to the local host, the app
// rotates the key and re-points every hub through ARM — real SDK clients, real HTTPS, Azure's host names.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUB_IDENTITY, SUB_A, SUB_B, VAULT_URL, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import { hub, keyVaultEvent, versions } from '../support/fleet';

const versionOf = (id: string | undefined) => id?.split('/').pop();

describe('rotation through the local host', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it('KeyNearExpiry → one new version → every hub moved with If-Match, all else kept, data still readable', async () => {
    const key = await h.createKey('story-cmk', { expiresInDays: 31, keySize: 3072 });
    const hubs = [hub(SUB_A, 'story-a1'), hub(SUB_A, 'story-a2'), hub(SUB_A, 'story-a3'), hub(SUB_B, 'story-b1')];
    for (const ref of hubs) await h.seedHub(ref, key.id!);
    const bystander = hub(SUB_B, 'story-other');
    const otherKey = await h.createKey('story-other-cmk');
    await h.seedHub(bystander, otherKey.id!);
    const before = h.stack.arm.getHub(hubs[0]!) as Record<string, unknown>;

    // Two days later the key is inside its 30-day notify window: Key Vault raises KeyNearExpiry.
    await h.stack.keyVault.admin.advanceClock(2 * 86_400);
    await h.until(async () => (await versions(h, 'story-cmk')).length === 2, 'a new key version');
    const created = (await versions(h, 'story-cmk')).find((v) => v.version !== key.properties.version)!;
    await h.until(() => hubs.every((r) => h.hubKey(r) === created.id), 'every hub on the new version');
    await h.stack.eventGrid.idle();

    // Exactly one new version: same type and size, wrap/unwrap, enabled, with an expiry so the cycle continues.
    expect(await versions(h, 'story-cmk')).toHaveLength(2);
    const newKey = await h.keys.getKey('story-cmk', { version: created.version! });
    expect(newKey.keyType).toBe('RSA');
    expect(newKey.key?.n?.length).toBe(384);
    expect(newKey.keyOperations).toEqual(expect.arrayContaining(['wrapKey', 'unwrapKey']));
    expect(newKey.properties.enabled).toBe(true);
    expect(newKey.properties.expiresOn!.getTime()).toBeGreaterThan(Date.now() + 80 * 86_400_000);

    // Every PUT went out with If-Match and a preview api-version; the bystander hub was never written.
    const puts = h.stack.arm.requests().filter((r) => r.method === 'PUT');
    expect(puts.length).toBeGreaterThanOrEqual(hubs.length);
    expect(puts.every((r) => r.headers.ifMatch && r.apiVersion?.endsWith('-preview'))).toBe(true);
    expect(puts.some((r) => r.url.includes('story-other'))).toBe(false);
    expect(h.hubKey(bystander)).toBe(otherKey.id);

    // Only the key identifier changed.
    const after = h.stack.arm.getHub(hubs[0]!) as Record<string, unknown>;
    const strip = (doc: Record<string, unknown>) => {
      // etag and systemData are the service's own bookkeeping of the write.
      const { etag: _etag, systemData: _systemData, ...rest } = structuredClone(doc);
      const props = rest.properties as Record<string, unknown> & {
        encryption: { keyVaultProperties: { keyIdentifier: string }[] };
      };
      props.encryption.keyVaultProperties[0]!.keyIdentifier = 'KEY';
      return rest;
    };
    expect(strip(after)).toEqual(strip(before));
    expect((after.properties as { futureFeature: unknown }).futureFeature).toEqual({
      enabled: true,
      nested: { list: [1, 2, 3] },
    });
    expect((after.identity as { userAssignedIdentities: object }).userAssignedIdentities).toHaveProperty([
      HUB_IDENTITY,
    ]);

    // The hub still reads its data: its data key was unwrapped with the old version and wrapped with the new.
    for (const ref of hubs) expect(await h.stack.arm.checkHubData(ref)).toMatchObject({ readable: true });

    // Recorded: audit history over HTTP, outcome events on the topic, structured logs.
    const history = await h.api(
      'GET',
      `/api/rotations?keyId=${encodeURIComponent(`${VAULT_URL}/keys/story-cmk`)}&limit=50`,
    );
    expect(history.status).toBe(200);
    const results = (history.body.records as { result: string; hubId?: string }[]).map((r) => r.result);
    expect(results.filter((r) => r === 'rotated')).toHaveLength(1);
    expect(results.filter((r) => r === 'moved')).toHaveLength(hubs.length);
    const outcomes = h.outcomes().filter((o) => JSON.stringify(o.data).includes('story-cmk'));
    expect(outcomes.filter((o) => o.type === 'CmkRotator.KeyRotated')).toHaveLength(1);
    expect(outcomes.filter((o) => o.type === 'CmkRotator.HubKeyUpdated')).toHaveLength(hubs.length);
    const moved = h.host.logs.filter((l) => l.event === 'hub.moved' && String(l.fields.key).endsWith('/story-cmk'));
    expect(moved).toHaveLength(hubs.length);
    expect(moved[0]?.fields).toMatchObject({ to: created.id, invocationId: expect.any(String) });

    // Status shows every hub current.
    const status = await h.api('GET', `/api/keys/status?keyId=${encodeURIComponent(`${VAULT_URL}/keys/story-cmk`)}`);
    expect(status.body.latestUsableVersion).toBe(created.id);
    expect((status.body.hubs as { current: boolean }[]).every((x) => x.current)).toBe(true);
  });

  it('a duplicate delivery creates no second version; an older version arriving late downgrades nothing', async () => {
    const key = await h.createKey('dup-cmk');
    const ref = hub(SUB_A, 'dup-hub');
    await h.seedHub(ref, key.id!);
    const nearExpiry = keyVaultEvent('KeyNearExpiry', key.id!);

    expect(await h.deliver([nearExpiry])).toBe(202);
    await h.until(() => versionOf(h.hubKey(ref)) !== key.properties.version, 'the hub moved');
    const v2 = h.hubKey(ref);
    expect(await h.deliver([nearExpiry])).toBe(202);
    expect(await h.deliver([nearExpiry, nearExpiry])).toBe(202);
    await h.stack.eventGrid.idle();
    expect(await versions(h, 'dup-cmk')).toHaveLength(2);

    // The old version's KeyNewVersionCreated arrives after the new one: the hub stays on the newer version.
    expect(await h.deliver([keyVaultEvent('KeyNewVersionCreated', key.id!)])).toBe(202);
    expect(h.hubKey(ref)).toBe(v2);
  });

  it('recovers from a lost ETag race (412) and from throttling (429 with Retry-After)', async () => {
    const key = await h.createKey('race-cmk');
    const raced = hub(SUB_A, 'race-hub');
    const throttled = hub(SUB_B, 'throttled-hub');
    await h.seedHub(raced, key.id!);
    await h.seedHub(throttled, key.id!);
    const v2 = await h.keys.createRsaKey('race-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    await h.stack.eventGrid.idle();
    await h.until(() => h.hubKey(raced) === v2.id && h.hubKey(throttled) === v2.id, 'hubs on v2');

    h.stack.arm.clearRequests();
    h.stack.arm.faults.raceEtag(raced, 1);
    h.stack.arm.faults.failNextRequests({
      status: 429,
      count: 2,
      method: 'PUT',
      path: 'throttled-hub',
      retryAfterSeconds: 1,
    });
    const v3 = await h.keys.createRsaKey('race-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    await h.stack.eventGrid.idle();
    await h.until(() => h.hubKey(raced) === v3.id && h.hubKey(throttled) === v3.id, 'hubs on v3');

    const statuses = (name: string) =>
      h.stack.arm
        .requests()
        .filter((r) => r.method === 'PUT' && r.url.includes(name))
        .map((r) => r.status);
    expect(statuses('race-hub')).toEqual([412, 201]);
    expect(statuses('throttled-hub')).toEqual([429, 429, 201]);
  });

  it('isolates a hub whose update fails: the others move, the failure is reported and published', async () => {
    const key = await h.createKey('iso-cmk');
    const refs = [hub(SUB_A, 'iso-1'), hub(SUB_A, 'iso-2'), hub(SUB_B, 'iso-3')];
    for (const ref of refs) await h.seedHub(ref, key.id!);
    h.stack.arm.faults.failNextOperations({
      count: 1,
      code: 'KeyVaultAccessDenied',
      message: 'The hub identity lost access.',
    });

    const response = await h.api('POST', '/api/keys/rotate', {
      keyId: `${VAULT_URL}/keys/iso-cmk`,
      reason: 'isolation test',
    });

    expect(response.status).toBe(200);
    const report = response.body as {
      status: string;
      createdVersion: string;
      hubs: { hubName: string; result: string; errorCode?: string }[];
    };
    expect(report.status).toBe('partially-failed');
    const failed = report.hubs.filter((x) => x.result === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]?.errorCode).toBe('HUB_UPDATE_FAILED');
    expect(report.hubs.filter((x) => x.result === 'moved')).toHaveLength(2);
    const failedRef = refs.find((r) => r.name === failed[0]?.hubName)!;
    expect(h.hubKey(failedRef)).toBe(key.id);
    expect(await h.stack.arm.checkHubData(failedRef)).toMatchObject({ readable: true });
    await h.until(
      () => h.outcomes().some((o) => o.type === 'CmkRotator.HubKeyUpdateFailed' && o.subject.endsWith(failedRef.name)),
      'a failure outcome event',
    );

    // Re-running the sync finishes the job for the failed hub.
    const sync = await h.api('POST', '/api/keys/sync', { keyId: `${VAULT_URL}/keys/iso-cmk` });
    expect(sync.status).toBe(200);
    expect(h.hubKey(failedRef)).toBe(report.createdVersion);
  });

  it('a dry run reports the plan and writes nothing', async () => {
    const key = await h.createKey('dry-cmk');
    const ref = hub(SUB_B, 'dry-hub');
    await h.seedHub(ref, key.id!);
    await h.stack.eventGrid.idle();
    const keyId = `${VAULT_URL}/keys/dry-cmk`;
    const historyBefore = await h.api('GET', `/api/rotations?keyId=${encodeURIComponent(keyId)}`);
    h.stack.arm.clearRequests();

    const response = await h.api('POST', '/api/keys/rotate', { keyId, dryRun: true });

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      dryRun: true,
      plannedVersion: { keyType: 'RSA', keySize: 2048 },
      hubs: [{ hubName: 'dry-hub', result: 'planned', from: [key.id] }],
    });
    expect(await versions(h, 'dry-cmk')).toHaveLength(1);
    expect(h.stack.arm.requests().filter((r) => r.method !== 'GET')).toHaveLength(0);
    expect(h.hubKey(ref)).toBe(key.id);
    const history = await h.api('GET', `/api/rotations?keyId=${encodeURIComponent(keyId)}`);
    expect(history.body.records).toEqual(historyBefore.body.records);
  });

  it('refuses foreign vaults, wrong keys and bad input clearly, and keeps serving', async () => {
    const foreign = { keyId: 'https://evil.vault.azure.net/keys/hub-cmk' };
    const refused = await h.api('POST', '/api/keys/rotate', foreign);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('VAULT_NOT_ALLOWED');

    expect((await h.api('POST', '/api/keys/rotate', foreign, {})).status).toBe(401);
    expect((await h.api('POST', '/api/keys/rotate', foreign, { 'x-functions-key': 'wrong' })).status).toBe(401);

    const notJson = await h.api('POST', '/api/keys/rotate', '{"keyId": ');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.details).toEqual([{ field: 'body', message: 'is not valid JSON' }]);

    const badFields = await h.api('POST', '/api/keys/sync', {
      keyId: 'http://demo.vault.azure.net/keys/x',
      dryRun: 'yes',
      extra: 1,
    });
    expect(badFields.status).toBe(400);
    expect((badFields.body.error.details as { field: string }[]).map((d) => d.field).sort()).toEqual([
      'dryRun',
      'extra',
      'keyId',
    ]);

    const badLimit = await h.api('GET', `/api/rotations?keyId=${encodeURIComponent(`${VAULT_URL}/keys/x`)}&limit=0`);
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.error.details[0].field).toBe('limit');

    expect((await h.api('GET', '/api/keys/status')).status).toBe(400);
    expect((await h.api('POST', '/api/keys/sync', { keyId: `${VAULT_URL}/keys/does-not-exist` })).status).toBe(404);

    // Malformed Event Grid bodies are answered 400 (Event Grid does not retry those); a foreign vault's event is
    // acknowledged and recorded, never acted on.
    expect(await h.deliver('not json')).toBe(400);
    expect(
      await h.deliver([
        keyVaultEvent('KeyNearExpiry', 'https://evil.vault.azure.net/keys/hub-cmk/0123456789abcdef0123456789abcdef'),
      ]),
    ).toBe(202);
    const badData = { ...keyVaultEvent('KeyNearExpiry', `${VAULT_URL}/keys/x/0123`), data: { Id: 42 } };
    expect(await h.deliver([badData])).toBe(202);
    await h.host.waitForLog((l) => l.event === 'rotation.failed' && l.fields.errorCode === 'INVALID_INPUT');
    await h.host.waitForLog((l) => l.event === 'rotation.failed' && l.fields.errorCode === 'VAULT_NOT_ALLOWED');

    expect((await h.api('GET', '/api/health', undefined, {})).status).toBe(200);
    // Nothing secret reached the log.
    const log = h.host.logs.map((l) => l.raw).join('\n');
    expect(log).not.toContain(h.functionKey);
    expect(log).not.toMatch(/Bearer\s+ey|AccountKey=/);
  });
});
