// The rotation service end to end: Key Vault raises an event, Event Grid delivers it to the local host, the app
// rotates the key and plans the move; each hub then advances by queue steps (read and PUT, a look at the running
// update, verify) — real SDK clients, real HTTPS, Azure's host names, Azurite's queues and tables.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUB_IDENTITY, SUB_A, SUB_B, VAULT_URL, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import {
  acceptedPuts,
  auditOf,
  expectAllOn,
  hub,
  jobIdFor,
  keyIdOf,
  keyVaultEvent,
  putStatuses,
  resultsOf,
  settleIfAny,
  versions,
  withoutNearExpiryEvents,
} from '../support/fleet';

describe('rotation through the local host', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ settings: { ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *' } });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it('KeyNearExpiry → one new version → every hub moved once with If-Match, all else kept, data readable', async () => {
    const key = await h.createKey('story-cmk', { expiresInDays: 31, keySize: 3072 });
    const hubs = [hub(SUB_A, 'story-a1'), hub(SUB_A, 'story-a2'), hub(SUB_A, 'story-a3'), hub(SUB_B, 'story-b1')];
    for (const ref of hubs) await h.seedHub(ref, key.id!);
    const bystander = hub(SUB_B, 'story-other');
    const otherKey = await h.createKey('story-other-cmk');
    await h.seedHub(bystander, otherKey.id!);
    await settleIfAny(h, key.id!);
    const before = h.stack.arm.getHub(hubs[0]!) as Record<string, unknown>;

    // Two days later the key is inside its 30-day notify window: Key Vault raises KeyNearExpiry.
    await h.stack.keyVault.admin.advanceClock(2 * 86_400);
    await h.until(async () => (await versions(h, 'story-cmk')).length === 2, 'a new key version');
    const created = (await versions(h, 'story-cmk')).find((v) => v.version !== key.properties.version)!;
    const job = await h.settle(jobIdFor(created.id!));
    await h.stack.eventGrid.idle();

    // Opened by the KeyNearExpiry planning or by Key Vault's KeyNewVersionCreated for the new version, whichever
    // came first: one job either way.
    expect(job).toMatchObject({ trigger: 'event', targetVersion: created.id });
    expect(resultsOf(job)).toEqual(Object.fromEntries(hubs.map((r) => [r.name, 'moved'])));
    expect(job.progress).toMatchObject({ moved: hubs.length, failed: 0, queued: 0, 'in-flight': 0 });
    // Exactly one new version: same type and size, wrap/unwrap, enabled, with an expiry so the cycle continues.
    expect(await versions(h, 'story-cmk')).toHaveLength(2);
    const newKey = await h.keys.getKey('story-cmk', { version: created.version! });
    expect(newKey.keyType).toBe('RSA');
    expect(newKey.key?.n?.length).toBe(384);
    expect(newKey.keyOperations).toEqual(expect.arrayContaining(['wrapKey', 'unwrapKey']));
    expect(newKey.properties.enabled).toBe(true);
    expect(newKey.properties.expiresOn!.getTime()).toBeGreaterThan(Date.now() + 80 * 86_400_000);

    // One accepted PUT per hub, each with If-Match and a preview api-version; the bystander hub was never written.
    for (const ref of hubs) expect(putStatuses(h, ref), ref.name).toEqual([201]);
    const puts = h.stack.arm.requests().filter((r) => r.method === 'PUT' && r.url.includes('/story-'));
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
    await expectAllOn(h, hubs, created.id!);

    // Recorded: audit history over HTTP, outcome events on the topic, structured logs.
    const results = (await auditOf(h, 'story-cmk')).map((r) => r.result);
    expect(results.filter((r) => r === 'rotated')).toHaveLength(1);
    expect(results.filter((r) => r === 'moved')).toHaveLength(hubs.length);
    expect(results.filter((r) => r === 'failed' || r === 'retrying')).toEqual([]);
    const outcomes = h.outcomes().filter((o) => JSON.stringify(o.data).includes('story-cmk'));
    expect(outcomes.filter((o) => o.type === 'CmkRotator.KeyRotated')).toHaveLength(1);
    expect(outcomes.filter((o) => o.type === 'CmkRotator.HubKeyUpdated')).toHaveLength(hubs.length);
    const moved = h.host.logs.filter((l) => l.event === 'hub.moved' && String(l.fields.key).endsWith('/story-cmk'));
    expect(moved).toHaveLength(hubs.length);
    expect(moved[0]?.fields).toMatchObject({ to: created.id, invocationId: expect.any(String) });

    // Status shows every hub current, and the job done.
    const status = await h.api('GET', `/api/keys/status?keyId=${encodeURIComponent(keyIdOf('story-cmk'))}`);
    expect(status.body.latestUsableVersion).toBe(created.id);
    expect((status.body.hubs as { current: boolean }[]).every((x) => x.current)).toBe(true);
    expect(status.body.job).toMatchObject({ jobId: jobIdFor(created.id!), done: true });
  }, 90_000);

  it('a duplicate delivery creates no second version; an older version arriving late downgrades nothing', async () => {
    const key = await withoutNearExpiryEvents(h, () => h.createKey('dup-cmk', { expiresInDays: 20 }));
    const ref = hub(SUB_A, 'dup-hub');
    await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    const nearExpiry = keyVaultEvent('KeyNearExpiry', key.id!);

    expect(await h.deliver([nearExpiry])).toBe(202);
    await h.until(async () => (await versions(h, 'dup-cmk')).length === 2, 'a new key version');
    const v2 = `${keyIdOf('dup-cmk')}/${(await versions(h, 'dup-cmk')).find((v) => v.id !== key.id)!.version!}`;
    // Redeliveries, also while the hub is still moving, and a batch carrying the event twice.
    expect(await h.deliver([nearExpiry])).toBe(202);
    expect(await h.deliver([nearExpiry, nearExpiry])).toBe(202);
    expect(resultsOf(await h.settle(jobIdFor(v2)))).toEqual({ 'dup-hub': 'moved' });
    await h.stack.eventGrid.idle();
    expect(await versions(h, 'dup-cmk')).toHaveLength(2);
    expect(h.hubKey(ref)).toBe(v2);

    // The old version's KeyNewVersionCreated arrives after the new one: the hub stays on the newer version.
    expect(await h.deliver([keyVaultEvent('KeyNewVersionCreated', key.id!)])).toBe(202);
    expect(await h.deliver([nearExpiry])).toBe(202);
    expect((await h.settle(jobIdFor(v2))).progress.moved).toBe(1);
    expect(h.hubKey(ref)).toBe(v2);
    expect(acceptedPuts(h, ref)).toBe(1);
    expect(await versions(h, 'dup-cmk')).toHaveLength(2);
    const audit = await auditOf(h, 'dup-cmk');
    expect(audit.filter((r) => r.result === 'rotated')).toHaveLength(1);
    expect(audit.filter((r) => r.result === 'moved')).toHaveLength(1);
  }, 60_000);

  it('recovers from a lost ETag race (412) and from throttling (429 with Retry-After), counting no attempt', async () => {
    const key = await h.createKey('race-cmk');
    const raced = hub(SUB_A, 'race-hub');
    const throttled = hub(SUB_B, 'throttled-hub');
    await h.seedHub(raced, key.id!);
    await h.seedHub(throttled, key.id!);
    const v2 = await h.keys.createRsaKey('race-cmk', { keySize: 2048, keyOps: ['wrapKey', 'unwrapKey'] });
    expect(resultsOf(await h.settle(jobIdFor(v2.id!)))).toEqual({ 'race-hub': 'moved', 'throttled-hub': 'moved' });

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
    const job = await h.settle(jobIdFor(v3.id!));

    expect(resultsOf(job)).toEqual({ 'race-hub': 'moved', 'throttled-hub': 'moved' });
    // Neither the lost race nor the throttling counts as a failed attempt.
    expect(job.hubs.map((x) => x.attempts)).toEqual([0, 0]);
    expect(putStatuses(h, raced)).toEqual([412, 201]);
    expect(putStatuses(h, throttled)).toEqual([429, 429, 201]);
    await expectAllOn(h, [raced, throttled], v3.id!);
  }, 60_000);

  it('isolates a hub whose update fails: the others move, the failure is reported and published', async () => {
    const key = await h.createKey('iso-cmk');
    const refs = [hub(SUB_A, 'iso-1'), hub(SUB_A, 'iso-2'), hub(SUB_B, 'iso-3')];
    for (const ref of refs) await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    h.stack.arm.faults.failNextOperations({
      count: 1,
      code: 'KeyVaultAccessDenied',
      message: 'The hub identity lost access.',
    });

    const response = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('iso-cmk'), reason: 'isolation test' });

    // The answer is the plan: the new version, the job, every hub queued.
    expect(response.status).toBe(200);
    const created = response.body.createdVersion as string;
    expect(response.body).toMatchObject({
      status: 'in-progress',
      jobId: jobIdFor(created),
      targetVersion: created,
      hubs: refs.map((r): unknown => expect.objectContaining({ hubName: r.name, result: 'queued', from: [key.id] })),
    });
    const job = await h.settle(response.body.jobId as string);
    const failed = job.hubs.filter((x) => x.result === 'failed');
    expect(failed).toMatchObject([{ errorCode: 'HUB_UPDATE_FAILED', reason: expect.stringContaining('lost access') }]);
    expect(job.progress).toMatchObject({ moved: 2, failed: 1 });
    const failedRef = refs.find((r) => r.name === failed[0]?.hubName)!;
    expect(h.hubKey(failedRef)).toBe(key.id);
    expect(await h.stack.arm.checkHubData(failedRef)).toMatchObject({ readable: true });
    await h.until(
      () => h.outcomes().some((o) => o.type === 'CmkRotator.HubKeyUpdateFailed' && o.subject.endsWith(failedRef.name)),
      'a failure outcome event',
    );
    expect((await auditOf(h, 'iso-cmk')).filter((r) => r.result === 'failed')).toMatchObject([
      { errorCode: 'HUB_UPDATE_FAILED', hubId: expect.stringMatching(new RegExp(`/${failedRef.name}$`)) },
    ]);

    // Re-running the sync starts the failed hub over, in the same job; the moved ones are left alone.
    const sync = await h.api('POST', '/api/keys/sync', { keyId: keyIdOf('iso-cmk') });
    expect(sync.status).toBe(200);
    expect(sync.body.jobId).toBe(response.body.jobId);
    expect(resultsOf(sync.body as typeof job)[failedRef.name]).toBe('queued');
    expect(resultsOf(await h.settle(sync.body.jobId as string))).toEqual(
      Object.fromEntries(refs.map((r) => [r.name, 'moved'])),
    );
    await expectAllOn(h, refs, created);
    for (const ref of refs) expect(acceptedPuts(h, ref), ref.name).toBe(ref === failedRef ? 2 : 1);
  }, 60_000);

  it('a dry run reports the plan and writes nothing', async () => {
    const key = await h.createKey('dry-cmk');
    const ref = hub(SUB_B, 'dry-hub');
    await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    const keyId = keyIdOf('dry-cmk');
    const historyBefore = await h.api('GET', `/api/rotations?keyId=${encodeURIComponent(keyId)}`);
    h.stack.arm.clearRequests();

    const response = await h.api('POST', '/api/keys/rotate', { keyId, dryRun: true });

    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      dryRun: true,
      status: 'planned',
      plannedVersion: { keyType: 'RSA', keySize: 2048 },
      hubs: [{ hubName: 'dry-hub', result: 'planned', from: [key.id] }],
    });
    expect(response.body.jobId).toBeUndefined();
    expect(await versions(h, 'dry-cmk')).toHaveLength(1);
    expect(h.stack.arm.requests().filter((r) => r.method !== 'GET')).toHaveLength(0);
    expect(h.hubKey(ref)).toBe(key.id);
    const history = await h.api('GET', `/api/rotations?keyId=${encodeURIComponent(keyId)}`);
    expect(history.body.records).toEqual(historyBefore.body.records);
    // A dry sync, too: the plan, no job.
    const sync = await h.api('POST', '/api/keys/sync', { keyId, dryRun: true });
    expect(sync.body).toMatchObject({ dryRun: true, hubs: [{ hubName: 'dry-hub', result: 'already-current' }] });
    expect(sync.body.jobId).toBeUndefined();
    expect(h.stack.arm.requests().filter((r) => r.method !== 'GET')).toHaveLength(0);
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
    // Job ids: malformed is 400, one for no job is 404, a foreign vault's is 403.
    expect((await h.api('GET', '/api/jobs/not-a-job')).status).toBe(400);
    expect((await h.api('GET', `/api/jobs/${jobIdFor(`${VAULT_URL}/keys/x/${'0'.repeat(32)}`)}`)).status).toBe(404);
    expect((await h.api('GET', `/api/jobs/evil.vault.azure.net~x~${'0'.repeat(32)}`)).status).toBe(403);

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
    expect(log).not.toMatch(/Bearer\s+ey|AccessKey=|AccountKey=/);
  });
});
