// Key Vault events: planned at once (a version created where due, the job opened, one step message per hub), then
// the hubs move through the step queue (drain).
import { describe, expect, it, vi } from 'vitest';
import { UpstreamUnavailableError } from '../../src/domain/errors';
import { hubBodyForWrite } from '../../src/domain/hubs';
import { ROTATED_FROM_TAG } from '../../src/domain/keyPolicy';
import type { JsonObject } from '../../src/domain/ports';
import { permanentHubFault } from '../fakes';
import { KEY, VAULT, fakeRotator, hubId, keyVaultEvent } from '../fakes/rotator';

const DAY = 86_400_000;
const NOW = new Date('2026-06-01T00:00:00Z').getTime();
/** A version inside Key Vault's default notify window (30 days before expiry). */
const nearExpiry = { expiresOn: new Date(NOW + 10 * DAY) };
const keyIdentifierOf = (body: JsonObject) =>
  (body.properties as { encryption: { keyVaultProperties: { keyIdentifier: string }[] } }).encryption
    .keyVaultProperties[0]!;

describe('a Key Vault event', () => {
  it('near expiry creates one version and answers with the plan; the steps then move every hub, keeping all else', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { keySize: 3072, tags: { owner: 'sec' }, ...nearExpiry });
    t.keyVault.policies.set(`${VAULT}/keys/hub-cmk`, { expiresIn: 'P60D' });
    const h1 = t.hubs.add(hubId('hub-1'), v1.id);
    const h2 = t.hubs.add(hubId('hub-2'), v1.id.toUpperCase().replace('HTTPS', 'https'));
    const other = t.hubs.add(hubId('hub-other'), `${VAULT}/keys/other-cmk/abc`);
    const before = structuredClone(t.hubs.hubs.get(h1)!.body);

    const report = await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', v1.id), t.invocation);

    expect(t.keyVault.created).toHaveLength(1);
    const created = t.keyVault.created[0]!;
    expect(created).toMatchObject({ keyType: 'RSA', keySize: 3072, enabled: true });
    expect(created.keyOps).toEqual(expect.arrayContaining(['wrapKey', 'unwrapKey']));
    expect(created.tags).toMatchObject({ owner: 'sec', [ROTATED_FROM_TAG]: v1.version });
    expect(created.expiresOn).toEqual(new Date('2026-07-31T00:00:00Z')); // the policy's P60D from now
    // Planned, not done: nothing written to a hub yet, one message for both hubs.
    expect(report).toMatchObject({ status: 'in-progress', createdVersion: created.id, targetVersion: created.id });
    expect(report.jobId).toBe(`contoso.vault.azure.net~hub-cmk~${created.version}`);
    expect(report.hubs.map((h) => [h.hubName, h.result, h.to])).toEqual(
      expect.arrayContaining([
        ['hub-1', 'queued', created.id],
        ['hub-2', 'queued', created.id],
      ]),
    );
    expect(report.hubs).toHaveLength(2);
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.steps.messages).toHaveLength(1);
    expect(t.steps.messages[0]!.message).toMatchObject({ key: KEY, targetVersion: created.version });
    expect(t.steps.messages[0]!.message.hubs.map((h) => [h.hubId, h.step]).sort()).toEqual([
      [h1, 0],
      [h2, 0],
    ]);

    await t.drain();

    expect(t.hubs.keyOf(h1)).toBe(created.id);
    expect(t.hubs.keyOf(h2)).toBe(created.id);
    expect(t.hubs.keyOf(other)).toBe(`${VAULT}/keys/other-cmk/abc`);
    // The PUT carried the hub as read (less what ARM owns) with only the key identifier changed, under If-Match.
    const put = t.hubs.puts.find((p) => p.hubId === h1)!;
    keyIdentifierOf(before).keyIdentifier = created.id;
    expect(put.body).toEqual(hubBodyForWrite(before));
    expect(put.body.properties).toEqual(before.properties);
    expect(t.hubs.puts.map((p) => p.ifMatch)).toEqual([
      expect.stringMatching(/^"etag-/),
      expect.stringMatching(/^"etag-/),
    ]);
    expect(t.audit.records.map((r) => r.result).sort()).toEqual(['moved', 'moved', 'rotated']);
    expect(t.outcomes.sent.map((o) => o.type).sort()).toEqual([
      'CmkRotator.HubKeyUpdated',
      'CmkRotator.HubKeyUpdated',
      'CmkRotator.KeyRotated',
    ]);
    expect(t.log.lines.some((l) => l.event === 'hub.moved' && l.fields.hub === h1)).toBe(true);
    expect((await t.rotator.job(report.jobId!)).progress).toMatchObject({ moved: 2, queued: 0, 'in-flight': 0 });
  });

  it('a duplicate delivery after the move creates no second version, sends no step and rewrites no hub', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, nearExpiry);
    t.hubs.add(hubId('hub-1'), v1.id);
    const event = keyVaultEvent('KeyNearExpiry', v1.id);
    const first = await t.rotator.handleEvent(event, t.invocation);
    await t.drain();
    const sent = t.steps.sent;

    const again = await t.rotator.handleEvent(event, t.invocation);

    expect(t.keyVault.created).toHaveLength(1);
    expect(t.steps.sent).toBe(sent);
    await t.drain();
    expect(t.hubs.puts).toHaveLength(1);
    // The move is planned: the repeat is answered at once, pointing at the job (which says how the hubs stand).
    expect(again).toMatchObject({ status: 'in-progress', jobId: first.jobId, hubs: [] });
    expect(again.decision).toMatch(/newer version .* already exists; the move to .* is already planned/);
    expect((await t.rotator.job(first.jobId!)).progress).toMatchObject({ moved: 1 });
  });

  it('a duplicate delivery while the hubs move joins the job: still one version and one accepted PUT per hub', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, nearExpiry);
    const hubs = [t.hubs.add(hubId('a'), v1.id), t.hubs.add(hubId('b'), v1.id)];
    const event = keyVaultEvent('KeyNearExpiry', v1.id);
    const first = await t.rotator.handleEvent(event, t.invocation);
    await t.drain({ maxMessages: 1 }); // both PUTs sent (one message), the updates run
    expect(hubs.map((h) => t.hubs.acceptedPuts(h))).toEqual([1, 1]);
    const listings = t.hubs.listings;
    const second = await t.rotator.handleEvent(event, t.invocation);

    expect(second).toMatchObject({ jobId: first.jobId, status: 'in-progress', hubs: [] });
    expect(t.hubs.listings).toBe(listings);
    expect((await t.rotator.job(first.jobId!)).progress).toMatchObject({ 'in-flight': 2 });
    await t.drain();
    expect(t.keyVault.created).toHaveLength(1);
    for (const hub of hubs) {
      expect(t.hubs.acceptedPuts(hub)).toBe(1);
      expect(t.hubs.keyOf(hub)).toBe(t.keyVault.created[0]!.id);
    }
  });

  it('concurrent deliveries of one event create one version and one job', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, nearExpiry);
    const hub = t.hubs.add(hubId('hub-1'), v1.id);
    const event = keyVaultEvent('KeyNearExpiry', v1.id);
    const results = await Promise.allSettled([1, 2, 3].map(() => t.rotator.handleEvent(event, t.invocation)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(t.keyVault.created).toHaveLength(1);
    expect(t.jobs.jobs.size).toBe(1);
    await t.drain();
    expect(t.hubs.acceptedPuts(hub)).toBe(1);
    expect(t.hubs.keyOf(hub)).toBe(t.keyVault.created[0]!.id);
  });

  it('KeyExpired for an old version whose successor exists only propagates', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { expiresOn: new Date(NOW - DAY) });
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub-1'), v1.id);
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyExpired', v1.id), t.invocation);
    expect(t.keyVault.created).toHaveLength(0);
    expect(report.targetVersion).toBe(v2.id);
    await t.drain();
    expect(t.hubs.keyOf(hubId('hub-1'))).toBe(v2.id);
  });

  it('KeyNewVersionCreated never rotates, and an older version arriving late never downgrades a hub', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const v3 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('on-v3'), v3.id);
    t.hubs.add(hubId('on-v1'), v1.id);

    // v3 is the latest: the late event for v2 moves the v1 hub to the latest usable version and leaves v3 alone.
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v2.id), t.invocation);
    expect(report.targetVersion).toBe(v3.id);
    await t.drain();

    expect(t.keyVault.created).toHaveLength(0);
    expect(t.hubs.keyOf(hubId('on-v3'))).toBe(v3.id);
    expect(t.hubs.keyOf(hubId('on-v1'))).toBe(v3.id);
    expect(t.hubs.puts.map((p) => p.hubId)).toEqual([hubId('on-v1')]);
    const job = await t.rotator.job(report.jobId!);
    expect(job.hubs.find((h) => h.hubName === 'on-v3')?.result).toBe('already-current');
  });

  it('a hub already on a newer version than the usable target is skipped, not downgraded', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY, { enabled: false });
    t.hubs.add(hubId('ahead'), v2.id);
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v1.id), t.invocation);
    await t.drain();
    expect(t.hubs.keyOf(hubId('ahead'))).toBe(v2.id);
    expect(t.hubs.puts).toHaveLength(0);
    const [hub] = (await t.rotator.job(report.jobId!)).hubs;
    expect(hub).toMatchObject({ result: 'skipped', reason: expect.stringMatching(/newer version/) });
    expect(t.audit.records.find((r) => r.hubId === hubId('ahead'))?.result).toBe('skipped');
  });

  it('refuses an event from a vault outside the allow-list without calling anything', async () => {
    const t = fakeRotator();
    const versions = vi.spyOn(t.keyVault, 'listVersions');
    const listed = vi.spyOn(t.hubs, 'listAll');
    const report = await t.rotator.handleEvent(
      keyVaultEvent('KeyNearExpiry', 'https://evil.vault.azure.net/keys/hub-cmk/0123456789abcdef'),
      t.invocation,
    );
    expect(report).toMatchObject({ status: 'refused', errorCode: 'VAULT_NOT_ALLOWED' });
    expect(versions).not.toHaveBeenCalled();
    expect(listed).not.toHaveBeenCalled();
    expect(t.keyVault.created).toHaveLength(0);
    expect(t.jobs.jobs.size).toBe(0);
    expect(t.steps.sent).toBe(0);
    expect(t.audit.records).toEqual([expect.objectContaining({ result: 'refused', errorCode: 'VAULT_NOT_ALLOWED' })]);
    expect(t.outcomes.sent).toHaveLength(0);
  });

  it('a KeyNearExpiry or KeyExpired Key Vault could not have raised now (forged or stale) creates nothing', async () => {
    const t = fakeRotator();
    const never = t.keyVault.addVersion(KEY);
    const far = t.keyVault.addVersion(KEY, { expiresOn: new Date(NOW + 200 * DAY) });
    const hub = t.hubs.add(hubId('hub'), far.id);
    for (const event of [keyVaultEvent('KeyNearExpiry', far.id), keyVaultEvent('KeyExpired', far.id)]) {
      expect((await t.rotator.handleEvent(event, t.invocation)).status).toBe('ignored');
    }
    expect(t.keyVault.created).toHaveLength(0);
    expect(t.steps.sent).toBe(0);
    expect(t.audit.records.map((r) => r.result)).toEqual(['ignored', 'ignored']);
    // One for a version older than a live one (which never expires: Key Vault raised nothing) only propagates the
    // live one: nothing is created, and the hub, already on it, is not written.
    const stale = await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', never.id), t.invocation);
    expect(stale).toMatchObject({ targetVersion: far.id, decision: expect.stringMatching(/newer version/) });
    await t.drain();
    expect(t.keyVault.created).toHaveLength(0);
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.jobs.taskOf(hub)?.state).toBe('already-current');
    // Inside the rotation policy's notify window, the same event is due.
    t.keyVault.policies.set(`${VAULT}/keys/hub-cmk`, { notifyBeforeExpiry: 'P200D' });
    await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', far.id), t.invocation);
    expect(t.keyVault.created).toHaveLength(1);
  });

  it('audits a foreign vault’s refused events at most once in a while (each is still refused)', async () => {
    const t = fakeRotator();
    const foreign = 'https://evil.vault.azure.net/keys/hub-cmk/0123456789abcdef';
    for (let i = 0; i < 3; i++) {
      const report = await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', foreign), t.invocation);
      expect(report).toMatchObject({ status: 'refused', errorCode: 'VAULT_NOT_ALLOWED' });
    }
    expect(t.audit.records).toHaveLength(1);
    t.clock.advance(11 * 60_000);
    await t.rotator.handleEvent(keyVaultEvent('KeyNearExpiry', foreign), t.invocation);
    expect(t.audit.records).toHaveLength(2);
  });

  it('records a malformed event as refused instead of throwing (Event Grid must not retry it)', async () => {
    const t = fakeRotator();
    const report = await t.rotator.handleEvent(
      { id: 'x', eventType: 'Microsoft.KeyVault.KeyNearExpiry', data: { Id: 'nope' } },
      t.invocation,
    );
    expect(report).toMatchObject({ status: 'refused', errorCode: 'INVALID_INPUT' });
    expect(t.audit.records).toHaveLength(1);
    expect(t.audit.records[0]).toMatchObject({ result: 'refused', trigger: 'event' });
    expect(t.audit.records[0]?.message).toMatch(/data\.Id/);
    expect(t.steps.sent).toBe(0);
  });

  it('ignores other Key Vault event types, recording and planning nothing', async () => {
    const t = fakeRotator();
    const report = await t.rotator.handleEvent(
      {
        ...keyVaultEvent('KeyNearExpiry', `${VAULT}/keys/hub-cmk/abc`),
        eventType: 'Microsoft.KeyVault.SecretNearExpiry',
      },
      t.invocation,
    );
    expect(report.status).toBe('ignored');
    expect(t.audit.records).toHaveLength(0);
    expect(t.jobs.jobs.size).toBe(0);
    expect(t.steps.sent).toBe(0);
  });

  it('moves nothing when the newest version is unusable, and reports why', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY, { keyOps: ['encrypt', 'decrypt'] });
    t.hubs.add(hubId('hub'), `${VAULT}/keys/hub-cmk/oldversion`);
    const report = await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v1.id), t.invocation);
    expect(report).toMatchObject({ status: 'failed', errorCode: 'KEY_UNUSABLE' });
    expect(report.message).toMatch(/wrapKey/);
    expect(t.jobs.jobs.size).toBe(0);
    expect(t.steps.sent).toBe(0);
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.audit.records).toContainEqual(expect.objectContaining({ result: 'failed', errorCode: 'KEY_UNUSABLE' }));
    expect(t.outcomes.sent.map((o) => o.type)).toContain('CmkRotator.RotationFailed');
  });

  it('rethrows a transient failure while planning (Event Grid redelivers), recorded as retrying, nothing planned', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    vi.spyOn(t.hubs, 'listAll').mockRejectedValueOnce(new UpstreamUnavailableError('ARM is unavailable (HTTP 503)'));

    await expect(
      t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v1.id), t.invocation),
    ).rejects.toBeInstanceOf(UpstreamUnavailableError);

    expect(t.steps.sent).toBe(0);
    expect(t.audit.records).toEqual([
      expect.objectContaining({ result: 'retrying', errorCode: 'UPSTREAM_UNAVAILABLE' }),
    ]);
    expect(t.outcomes.sent).toHaveLength(0);
  });

  it('a redelivered event joins the planned job and does not restart a failed hub (operators and the reconciler do)', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const bad = t.hubs.add(hubId('bad'), v1.id);
    t.hubs.faults.push(permanentHubFault(bad));
    const event = keyVaultEvent('KeyNewVersionCreated', v2.id);
    await t.rotator.handleEvent(event, t.invocation);
    await t.drain();
    expect(t.jobs.taskOf(bad)?.state).toBe('failed');
    t.hubs.faults = [];
    const puts = t.hubs.puts.length;

    const again = await t.rotator.handleEvent(event, t.invocation);
    await t.drain();

    expect(again).toMatchObject({ status: 'in-progress', hubs: [] });
    expect((await t.rotator.job(again.jobId!)).hubs).toEqual([
      expect.objectContaining({ hubId: bad, result: 'failed' }),
    ]);
    expect(t.hubs.puts).toHaveLength(puts);
    expect(t.hubs.keyOf(bad)).toBe(v1.id);
  });
});

describe('planning', () => {
  it('a repeated event for a planned move is answered at once, listing no hub; an operator’s sync still plans in full', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const hub = t.hubs.add(hubId('hub'), v1.id);
    const event = keyVaultEvent('KeyNewVersionCreated', v2.id);
    const first = await t.rotator.handleEvent(event, t.invocation);
    expect(first).toMatchObject({ status: 'in-progress', jobId: expect.any(String) });
    expect(t.hubs.listings).toBe(1);
    expect(await t.jobs.find(KEY, v2.version)).toMatchObject({ planned: true });
    const late = t.hubs.add(hubId('late'), v1.id); // uses the key since the plan
    const sent = t.steps.sent;

    for (const again of [event, { ...event, id: 'evt-second' }]) {
      const report = await t.rotator.handleEvent(again, t.invocation);
      expect(report).toMatchObject({
        status: 'in-progress',
        jobId: first.jobId,
        targetVersion: v2.id,
        dryRun: false,
        hubs: [],
        correlationId: t.invocation.correlationId,
      });
      expect(report.decision).toMatch(/already planned/);
    }
    expect(t.hubs.listings).toBe(1);
    expect(t.steps.sent).toBe(sent);
    expect(t.jobs.taskOf(late)).toBeUndefined();
    const joined = t.log.lines.filter((l) => l.event === 'job.joined');
    expect(joined).toHaveLength(2);
    expect(joined[0]!.fields).toMatchObject({ jobId: first.jobId, version: v2.version });

    const sync = await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    expect(t.hubs.listings).toBe(2);
    expect(sync.jobId).toBe(first.jobId);
    expect(Object.fromEntries(sync.hubs.map((h) => [h.hubId, h.result]))).toEqual({
      [hub]: 'queued',
      [late]: 'queued',
    });
    expect(t.steps.queuedHubs().map((h) => h.hubId)).toEqual([hub, late]); // the hub's own step, and the late one’s
    await t.drain();
    for (const h of [hub, late]) {
      expect(t.hubs.keyOf(h)).toBe(v2.id);
      expect(t.hubs.acceptedPuts(h)).toBe(1);
    }
  });

  it('a redelivery of an event whose planning was cut short (the job never marked planned) plans in full', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const hub = t.hubs.add(hubId('hub'), v1.id);
    const event = keyVaultEvent('KeyNewVersionCreated', v2.id);
    vi.spyOn(t.jobs, 'markPlanned').mockRejectedValueOnce(new UpstreamUnavailableError('the jobs table'));
    await expect(t.rotator.handleEvent(event, t.invocation)).rejects.toBeInstanceOf(UpstreamUnavailableError);
    expect((await t.jobs.find(KEY, v2.version))?.planned).toBeUndefined();

    // Meanwhile another delivery is told the job is being planned, without listing the hubs again.
    const meanwhile = await t.rotator.handleEvent(event, t.invocation);
    expect(meanwhile).toMatchObject({ status: 'in-progress', hubs: [] });
    expect(meanwhile.decision).toContain('being planned');
    expect(t.hubs.listings).toBe(1);

    // Event Grid redelivers the failed delivery no sooner than 10 s later: past the grace, it plans in full.
    t.clock.advance(10_000);
    const again = await t.rotator.handleEvent(event, t.invocation);

    expect(t.hubs.listings).toBe(2);
    expect(again).toMatchObject({
      status: 'in-progress',
      hubs: [expect.objectContaining({ hubId: hub, result: 'queued' })],
    });
    expect(t.steps.sent).toBe(1); // the first delivery queued the hub's step
    expect(await t.jobs.find(KEY, v2.version)).toMatchObject({ planned: true });
    await t.drain();
    expect(t.hubs.keyOf(hub)).toBe(v2.id);
    expect(t.hubs.acceptedPuts(hub)).toBe(1);
  });

  it('opens no job for a key no hub uses: an event, a sync or a rotation answers succeeded without a job id', async () => {
    const t = fakeRotator();
    t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    const other = t.hubs.add(hubId('other'), `${VAULT}/keys/other-cmk/abc`);

    const reports = [
      await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v2.id), t.invocation),
      await t.rotator.handleEvent(keyVaultEvent('KeyNewVersionCreated', v2.id), t.invocation),
      await t.rotator.sync(KEY, { dryRun: false }, t.invocation),
      await t.rotator.rotate(KEY, { dryRun: false }, t.invocation),
    ];

    for (const report of reports) {
      expect(report).toMatchObject({ status: 'succeeded', hubs: [], dryRun: false });
      expect(report).not.toHaveProperty('jobId');
    }
    expect(reports[0]!.targetVersion).toBe(v2.id);
    expect(t.keyVault.created).toHaveLength(1); // the operator asked for a version: it is made, moving no hub
    expect(reports[3]!.createdVersion).toBe(t.keyVault.created[0]!.id);
    expect(t.jobs.jobs.size).toBe(0);
    expect(t.steps.sent).toBe(0);
    expect(t.hubs.listings).toBe(4); // with no job to join, each looks for hubs again
    expect(t.hubs.puts).toHaveLength(0);
    expect(t.hubs.keyOf(other)).toBe(`${VAULT}/keys/other-cmk/abc`);
  });
});
