// The pure decisions of the pipeline: what to do with a hub, whether a step message runs, what a failure makes of a
// task, how a task shows in a report, what the reconciler calls drift, and job ids.
import { describe, expect, it } from 'vitest';
import { hubsBehind, missedRotation } from '../../src/domain/drift';
import { ThrottledError, UpstreamRejectedError, UpstreamUnavailableError } from '../../src/domain/errors';
import {
  afterFailure,
  boundedWaitMs,
  decideHub,
  progressOf,
  resultOf,
  retryDelayMs,
  stepDisposition,
} from '../../src/domain/hubStep';
import type { StepTiming } from '../../src/domain/hubStep';
import { jobIdOf, parseJobId } from '../../src/domain/jobId';
import type { HubTask, KeyVersionSummary } from '../../src/domain/ports';
import { hubBody } from '../fakes';
import { KEY, VAULT } from '../fakes/rotator';

const NOW = new Date('2026-06-01T00:00:00Z');
const at = (ms: number) => new Date(NOW.getTime() + ms);
const TIMING: StepTiming = { firstRetryDelayMs: 30_000, maxHubAttempts: 3, minWaitMs: 1_000, maxWaitMs: 300_000 };
const task = (fields: Partial<HubTask> = {}): HubTask => ({
  hubId: '/subscriptions/s/hub',
  hubName: 'hub',
  state: 'pending',
  step: 2,
  attempts: 0,
  from: [],
  ...fields,
});
const version = (v: string, createdMs: number, fields: Partial<KeyVersionSummary> = {}): KeyVersionSummary => ({
  ...KEY,
  id: `${VAULT}/keys/hub-cmk/${v}`,
  version: v,
  enabled: true,
  createdOn: new Date(createdMs),
  ...fields,
});

describe('decideHub', () => {
  const versions = [version('a', 1000), version('b', 2000)];
  it('moves older, leaves current and newer, skips versionless references', () => {
    expect(decideHub(['a'], 'b', versions).result).toBe('move');
    expect(decideHub(['B'], 'b', versions).result).toBe('already-current');
    expect(decideHub(['b'], 'a', versions)).toEqual({ result: 'skipped', reason: expect.stringMatching(/newer/) });
    expect(decideHub([undefined], 'b', versions).result).toBe('skipped');
    expect(decideHub([], 'b', versions).result).toBe('skipped');
    expect(decideHub(['unknown-version'], 'b', versions).result).toBe('move');
    expect(decideHub(['a'], undefined, versions).result).toBe('move');
    // A hub with two references, one on the target and one behind, still moves.
    expect(decideHub(['b', 'a'], 'b', versions).result).toBe('move');
  });
});

describe('stepDisposition', () => {
  it('runs the current step when no lease is live and nothing is to wait for', () => {
    expect(stepDisposition(task(), 2, NOW)).toEqual({ kind: 'run' });
    expect(stepDisposition(task({ leaseUntil: at(-1) }), 2, NOW)).toEqual({ kind: 'run' });
    expect(stepDisposition(task({ notBefore: NOW }), 2, NOW)).toEqual({ kind: 'run' });
  });

  it('does nothing for another step, or a step under a live lease', () => {
    expect(stepDisposition(task(), 1, NOW).kind).toBe('done');
    expect(stepDisposition(task(), 3, NOW).kind).toBe('done');
    expect(stepDisposition(task({ leaseUntil: at(1) }), 2, NOW).kind).toBe('done');
  });

  it('puts off a step that is not due, by exactly the time left', () => {
    expect(stepDisposition(task({ notBefore: at(45_000) }), 2, NOW)).toEqual({ kind: 'later', delayMs: 45_000 });
  });

  it('records a final task whose record is not out, whatever step the message names, and then is done', () => {
    expect(stepDisposition(task({ state: 'moved', recorded: false }), 0, NOW)).toEqual({ kind: 'record' });
    expect(stepDisposition(task({ state: 'failed' }), 2, NOW)).toEqual({ kind: 'record' });
    expect(stepDisposition(task({ state: 'moved', recorded: true }), 2, NOW).kind).toBe('done');
  });
});

describe('afterFailure', () => {
  it('waits as long as ARM asked after throttling (bounded), counting no attempt', () => {
    const throttled = (ms?: number) => afterFailure(task({ attempts: 1 }), new ThrottledError('429', ms), NOW, TIMING);
    expect(throttled(45_000)).toMatchObject({
      delayMs: 45_000,
      changes: { state: 'pending', waiting: 'throttled', notBefore: at(45_000) },
    });
    expect(throttled(45_000).changes.attempts).toBeUndefined();
    expect(throttled(3_600_000).delayMs).toBe(300_000);
    expect(throttled(10).delayMs).toBe(1_000);
    expect(throttled(undefined).delayMs).toBe(1_000);
  });

  it('backs off transient failures four times longer each time, then fails after maxHubAttempts', () => {
    const error = new UpstreamUnavailableError('503');
    const first = afterFailure(task({ state: 'updating' }), error, NOW, TIMING);
    expect(first).toMatchObject({
      delayMs: 30_000,
      changes: { state: 'updating', attempts: 1, waiting: 'backoff', errorCode: 'UPSTREAM_UNAVAILABLE' },
    });
    expect(first.changes.reason).toMatch(/attempt 1 of 3; will retry/);
    expect(afterFailure(task({ attempts: 1 }), error, NOW, TIMING).delayMs).toBe(120_000);
    const last = afterFailure(task({ attempts: 2 }), error, NOW, TIMING);
    expect(last).toMatchObject({ delayMs: 0, changes: { state: 'failed', attempts: 3 } });
    expect(last.changes.reason).toMatch(/gave up after 3 attempts/);
  });

  it('fails a permanent failure at once, with its code', () => {
    const error = new UpstreamRejectedError('ACCESS_DENIED', 'no access to the hub');
    expect(afterFailure(task(), error, NOW, TIMING)).toEqual({
      delayMs: 0,
      changes: { state: 'failed', attempts: 1, errorCode: 'ACCESS_DENIED', reason: 'no access to the hub' },
    });
  });

  it('treats an unknown error as transient, without echoing its text', () => {
    const result = afterFailure(task(), new Error('secret=abc'), NOW, TIMING);
    expect(result.changes).toMatchObject({ state: 'pending', attempts: 1, errorCode: 'INTERNAL' });
    expect(result.changes.reason).not.toContain('secret');
  });
});

describe('waits', () => {
  it('retryDelayMs grows fourfold and stops at an hour; boundedWaitMs clamps Retry-After', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 30_000))).toEqual([30_000, 120_000, 480_000, 1_920_000]);
    expect(retryDelayMs(9, 30_000)).toBe(3_600_000);
    expect(boundedWaitMs(20_000, TIMING)).toBe(20_000);
    expect(boundedWaitMs(0, TIMING)).toBe(1_000);
    expect(boundedWaitMs(900_000, TIMING)).toBe(300_000);
  });
});

describe('resultOf and progressOf', () => {
  const tasks: HubTask[] = [
    task({ state: 'moved' }),
    task({ state: 'failed' }),
    task({ state: 'skipped' }),
    task({ state: 'pending' }),
    task({ state: 'updating', waiting: 'operation', notBefore: at(10_000) }),
    task({ state: 'pending', waiting: 'throttled', notBefore: at(60_000) }),
    task({ state: 'updating', waiting: 'throttled', notBefore: at(60_000) }),
    task({ state: 'pending', waiting: 'backoff', notBefore: at(30_000) }),
    // A wait that is over shows as what the task is doing next, not as the wait.
    task({ state: 'pending', waiting: 'backoff', notBefore: at(-1) }),
  ];
  it('shows each task as where its move stands', () => {
    expect(tasks.map((t) => resultOf(t, NOW))).toEqual([
      'moved',
      'failed',
      'skipped',
      'queued',
      'in-flight',
      'throttled',
      'throttled',
      'retrying',
      'queued',
    ]);
  });

  it('counts tasks by result', () => {
    expect(progressOf(tasks, NOW)).toEqual({
      moved: 1,
      'already-current': 0,
      skipped: 1,
      failed: 1,
      planned: 0,
      queued: 2,
      'in-flight': 1,
      throttled: 2,
      retrying: 1,
    });
  });
});

describe('drift', () => {
  const DAY = 86_400_000;
  it('missedRotation: the newest live version expiring within the window, or no live version at all', () => {
    const soon = [version('a', 1000), version('b', 2000, { expiresOn: at(10 * DAY) })];
    expect(missedRotation(KEY, soon, NOW, 30)).toMatchObject({
      fromVersion: 'b',
      finding: { kind: 'key-near-expiry', keyId: `${VAULT}/keys/hub-cmk` },
    });
    expect(missedRotation(KEY, [version('b', 2000, { expiresOn: at(31 * DAY) })], NOW, 30)).toBeUndefined();
    expect(missedRotation(KEY, [version('b', 2000)], NOW, 30)).toBeUndefined();
    const dead = [version('a', 1000, { enabled: false }), version('b', 2000, { expiresOn: at(-1) })];
    expect(missedRotation(KEY, dead, NOW, 30)).toMatchObject({
      fromVersion: 'b',
      finding: { kind: 'no-usable-version' },
    });
    expect(missedRotation(KEY, [], NOW, 30)).toBeUndefined();
  });

  it('hubsBehind: hubs on older or unusable versions, never those on the target, newer or versionless', () => {
    const versions = [
      version('old', 1000),
      version('off', 1500, { enabled: false }),
      version('target', 2000),
      version('newer', 3000, { enabled: false }),
    ];
    const hub = (name: string, v: string) => ({
      id: `/subscriptions/s/hubs/${name}`,
      name,
      body: hubBody(`/subscriptions/s/hubs/${name}`, `${VAULT}/keys/hub-cmk${v ? `/${v}` : ''}`),
    });
    const hubs = [
      hub('behind', 'old'),
      hub('disabled', 'off'),
      hub('missing', 'gone'),
      hub('current', 'target'),
      hub('ahead', 'newer'),
      hub('follows', ''),
    ];
    const findings = hubsBehind(KEY, hubs, versions, versions[2]!, NOW);
    expect(findings.map((f) => [f.hubId?.split('/').pop(), f.kind])).toEqual([
      ['behind', 'hub-behind'],
      ['disabled', 'hub-on-unusable-version'],
      ['missing', 'hub-on-unusable-version'],
    ]);
    expect(findings[1]?.detail).toMatch(/disabled/);
    expect(findings[2]?.detail).toMatch(/missing/);
  });
});

describe('job ids', () => {
  it('name the vault, key and version, and parse back', () => {
    const id = jobIdOf({ vaultUrl: 'https://Contoso.vault.azure.net', name: 'Hub-CMK' }, 'ABC123');
    expect(id).toBe('contoso.vault.azure.net~hub-cmk~abc123');
    expect(parseJobId(id)).toEqual({
      key: { vaultUrl: 'https://contoso.vault.azure.net', name: 'hub-cmk' },
      targetVersion: 'abc123',
    });
  });

  it.each(['', 'contoso.vault.azure.net~hub-cmk', 'a~b~c~d', 'contoso.vault.azure.net~bad_name~abc', 'x~k~no-dash'])(
    'rejects %j as a job id, naming the field',
    (id) => {
      expect(() => parseJobId(id)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
      expect(() => parseJobId(id)).toThrow(/id: is not a job id/);
    },
  );
});
