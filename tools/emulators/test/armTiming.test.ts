// Timing in the ARM emulator: ARM's per-subscription read/write/delete buckets, how long each hub's operations run,
// and the Retry-After the emulator advertises while they do.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningArmEmulator } from '../src/arm';
import type { EmulatorClock } from '../src/clock';
import { hubBody, hubPath, OTHER_SUB, ref, RG, startArmBed, SUB } from './armBed';
import type { ArmBed, HubJson } from './armBed';

const READS = 'x-ms-ratelimit-remaining-subscription-reads';
const WRITES = 'x-ms-ratelimit-remaining-subscription-writes';
const DELETES = 'x-ms-ratelimit-remaining-subscription-deletes';

describe('ARM emulator: subscription throttling', () => {
  let bed: ArmBed;
  let arm: RunningArmEmulator;
  let clock: EmulatorClock;
  const get = (name: string, sub = SUB) => bed.send('GET', hubPath(name, RG, sub), { via: bed.noRetryClient });

  beforeAll(async () => {
    bed = await startArmBed();
    ({ arm, clock } = bed);
  });

  beforeEach(() => arm.reset());

  afterAll(async () => {
    await bed?.close();
  });

  it('throttles reads per subscription: remaining-reads on every read, then 429 with Retry-After and ARM body', async () => {
    await bed.seed('thr-read');
    arm.faults.setThrottling({ enabled: true, reads: { burst: 2, refillPerSecond: 1 } });

    const [a, b, c] = [await get('thr-read'), await get('thr-missing'), await get('thr-read')];
    expect([a.status, b.status, c.status]).toEqual([200, 404, 429]);
    expect([a, b, c].map((r) => r.headers.get(READS))).toEqual(['1', '0', '0']);
    expect(c.headers.get('retry-after')).toBe('1');
    expect(c.json.error?.code).toBe('SubscriptionRequestsThrottled');
    expect(c.json.error?.message).toMatch(/^Number of 'read' requests for subscription '[^']+' actor '[^']+' exceeded/);
    const list = await bed.send('GET', `/subscriptions/${SUB}/providers/Microsoft.Devices/IotHubs`, {
      via: bed.noRetryClient,
    });
    expect(list.status).toBe(429);

    const write = await bed.send('PUT', hubPath('thr-write'), { body: hubBody(), via: bed.noRetryClient });
    expect(write.status).toBe(201);
    expect(write.headers.get(READS)).toBeUndefined();
    expect((await get('thr-read', OTHER_SUB)).headers.get(READS)).toBe('1');

    clock.advance(1000);
    const refilled = await get('thr-read');
    expect([refilled.status, refilled.headers.get(READS)]).toEqual([200, '0']);
    expect(arm.requests().filter((r) => r.fault === 'throttled')).toHaveLength(2);
  });

  it('the SDK waits out a read 429 and gets the hub once the bucket refills', async () => {
    await bed.seed('thr-sdk');
    arm.faults.setThrottling({ enabled: true, reads: { burst: 1, refillPerSecond: 10 } });
    await bed.client.iotHubResource.get(RG, 'thr-sdk');
    const hub = await bed.client.iotHubResource.get(RG, 'thr-sdk');
    expect(hub.name).toBe('thr-sdk');
    expect(arm.requests().map((r) => r.status)).toEqual([200, 429, 200]);
  });

  it('reads stay unthrottled unless asked for (callers from before read throttling); deletes have their own bucket', async () => {
    await bed.seed('thr-legacy');
    arm.faults.setThrottling({ enabled: true, burst: 5 });
    expect(arm.faults.throttling()).toEqual({
      write: { burst: 5, refillPerSecond: 10 },
      delete: { burst: 200, refillPerSecond: 10 },
    });
    expect((await get('thr-legacy')).headers.get(READS)).toBeUndefined();
    const put = await bed.send('PUT', hubPath('thr-legacy-2'), { body: hubBody(), via: bed.noRetryClient });
    expect(put.headers.get(WRITES)).toBe('4');
    const del = await bed.send('DELETE', hubPath('thr-legacy'), { via: bed.noRetryClient });
    expect([del.status, del.headers.get(DELETES), del.headers.get(WRITES)]).toEqual([202, '199', undefined]);

    arm.faults.setThrottling({ enabled: false });
    expect(arm.faults.throttling()).toEqual({});
  });

  it('the admin API switches every bucket with ARM defaults and reports them', async () => {
    expect((await bed.admin('PUT', '/_admin/throttling', { enabled: true, reads: true })).status).toBe(204);
    expect((await bed.admin('GET', '/_admin/throttling')).json).toEqual({
      read: { burst: 250, refillPerSecond: 25 },
      write: { burst: 200, refillPerSecond: 10 },
      delete: { burst: 200, refillPerSecond: 10 },
    });
    expect((await get('thr-none')).headers.get(READS)).toBe('249');
    const bad = await bed.admin('PUT', '/_admin/throttling', { enabled: true, reads: { burst: 0 } });
    expect(bad.status).toBe(400);
    expect(bad.json.error?.message).toContain("'reads");
  });
});

describe('ARM emulator: operation duration per hub and Retry-After', () => {
  let bed: ArmBed;
  let arm: RunningArmEmulator;

  /** A tag change on a seeded hub; returns the PUT answer. */
  async function update(name: string) {
    const current = await bed.send('GET', hubPath(name));
    return bed.send('PUT', hubPath(name), {
      body: { ...hubBody(), tags: { touched: 'yes' } },
      headers: { 'if-match': current.json.etag as string },
    });
  }

  beforeAll(async () => {
    // No emulator-wide Retry-After: operations advertise one derived from their duration.
    bed = await startArmBed({ asyncOperationDelayMs: 20, retryAfterSeconds: undefined });
    ({ arm } = bed);
  });

  beforeEach(() => arm.reset());

  afterAll(async () => {
    await bed?.close();
  });

  it("a slow hub's update runs for its own duration while the others finish on the default", async () => {
    await bed.seed('hub-fast');
    await bed.seed('hub-slow');
    arm.timing.setHub(ref('hub-slow'), { operationMs: 60_000, retryAfterSeconds: 15 });

    const [fast, slow] = [await update('hub-fast'), await update('hub-slow')];
    expect(slow.headers.get('retry-after')).toBe('15');
    expect(await bed.waitForOperation(fast.headers.get('azure-asyncoperation') ?? '')).toEqual({
      status: 'Succeeded',
    });
    const status = await bed.send('GET', slow.headers.get('azure-asyncoperation') ?? '');
    expect(status.json).toEqual({ status: 'Running' });
    expect(status.headers.get('retry-after')).toBe('15');
    expect((arm.getHub(ref('hub-slow'))?.properties as HubJson['properties']).provisioningState).toBe('Updating');

    expect(arm.timing.of(ref('hub-slow'))).toEqual({ operationMs: 60_000, retryAfterSeconds: 15, perHub: true });
    arm.timing.setHub(ref('hub-slow'), null);
    expect(arm.timing.of(ref('hub-slow'))).toEqual({ operationMs: 20, retryAfterSeconds: 1, perHub: false });
  });

  it('never advertises a Retry-After past the end of the operation', async () => {
    await bed.seed('hub-short');
    arm.timing.setHub(ref('hub-short'), { operationMs: 2_000, retryAfterSeconds: 30 });
    const put = await update('hub-short');
    expect(put.headers.get('retry-after')).toBe('2');
    const status = await bed.send('GET', put.headers.get('azure-asyncoperation') ?? '');
    expect(Number(status.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(status.headers.get('retry-after'))).toBeLessThanOrEqual(2);
  });

  it('the admin API sets emulator-wide and per-hub timing, and seeds hubs with their own', async () => {
    expect((await bed.admin('PUT', '/_admin/timing', { operationMs: 40_000 })).status).toBe(204);
    expect((await bed.admin('GET', '/_admin/timing')).json).toEqual({
      operationMs: 40_000,
      retryAfterSeconds: 10,
      perHub: false,
    });
    const timingPath = `/_admin/hubs/${SUB}/${RG}/hub-admin/timing`;
    expect((await bed.admin('PUT', timingPath, { operationMs: 3_000 })).status).toBe(204);
    expect((await bed.admin('GET', timingPath)).json).toEqual({
      operationMs: 3_000,
      retryAfterSeconds: 1,
      perHub: true,
    });
    expect((await bed.admin('DELETE', timingPath)).status).toBe(204);
    expect((await bed.admin('GET', timingPath)).json).toMatchObject({ operationMs: 40_000, perHub: false });

    const seeded = await bed.admin('POST', '/_admin/hubs', {
      ...ref('hub-seeded'),
      hub: hubBody(),
      timing: { operationMs: 90_000, retryAfterSeconds: 20 },
    });
    expect(seeded.status).toBe(201);
    expect((await update('hub-seeded')).headers.get('retry-after')).toBe('20');

    const bad = await bed.admin('PUT', timingPath, { operationMs: -1 });
    expect(bad.status).toBe(400);
    expect(bad.json.error?.message).toContain("'operationMs'");
  });
});
