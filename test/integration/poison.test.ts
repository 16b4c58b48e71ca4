// Step messages that keep failing, end to end through the local host's queue triggers: after maxDequeueCount (5,
// host.json) the host moves the message to hub-steps-poison, where hubStepsPoison fails the hubs it names (recorded
// and published: nothing is lost silently), or logs and drops a message that names none. The app runs with
// host.json's visibilityTimeout at 1 s instead of 30 s, so five tries take seconds rather than two minutes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUB_A, startHarness } from '../support/harness';
import type { Harness } from '../support/harness';
import {
  acceptedPuts,
  expectAllOn,
  hub,
  hubAudit,
  jobIdFor,
  keyIdOf,
  outcomesFor,
  resultsOf,
  settleIfAny,
} from '../support/fleet';

const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

describe('poison step messages', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      queues: { visibilityTimeout: '00:00:01' },
      settings: {
        // A poison message whose handler failed comes back after 5 s (the host's lease; Azure's is 10 minutes).
        LOCAL_HOST_QUEUE_LEASE_SECONDS: '5',
        ROTATOR_RECONCILE_SCHEDULE: '0 0 0 1 1 *',
      },
    });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  const logged = (pattern: RegExp) => h.host.logs.filter((l) => pattern.test(l.raw));

  it('a message that names no hub fails five times, moves to hub-steps-poison, and is logged and dropped there', async () => {
    const steps = h.queue('hub-steps');
    await steps.createIfNotExists();
    const outcomesBefore = h.outcomes().length;
    const movesBefore = logged(/Moving message to queue 'hub-steps-poison'/).length;
    const failuresBefore = logged(/Executed 'Functions\.hubSteps' \(Failed/).length;
    const { messageId } = await steps.sendMessage(base64(JSON.stringify({ hello: 'not a step' })));

    await h.until(
      () => logged(/step\.poison-unreadable/).length > 0,
      'the poison handler logged the unreadable message',
      60_000,
    );

    // Five deliveries on hub-steps, each a failed invocation, then the move.
    const tries = logged(new RegExp(`MessageId: ${messageId}, DequeueCount: (\\d)`)).map((l) =>
      Number(/DequeueCount: (\d)/.exec(l.raw)![1]),
    );
    expect(tries).toEqual([1, 2, 3, 4, 5]);
    expect(logged(/Moving message to queue 'hub-steps-poison'/)).toHaveLength(movesBefore + 1);
    expect(logged(/Executed 'Functions\.hubSteps' \(Failed/)).toHaveLength(failuresBefore + 5);
    expect(h.host.logs.find((l) => l.event === 'step.poison-unreadable')?.fields).toMatchObject({
      errorCode: 'INVALID_INPUT',
    });
    // Dropped: neither queue keeps it, and nothing was recorded or published for it.
    await h.until(
      async () => ((await h.queue('hub-steps-poison').getProperties()).approximateMessagesCount ?? 0) === 0,
      'the poison queue emptied',
    );
    expect((await steps.getProperties()).approximateMessagesCount).toBe(0);
    expect(h.outcomes()).toHaveLength(outcomesBefore);
  }, 90_000);

  it('a hub whose ledger row cannot be read: its message goes to the poison queue, then the hub is failed and reported', async () => {
    const key = await h.createKey('poison-cmk');
    const ref = hub(SUB_A, 'poison-hub');
    await h.seedHub(ref, key.id!);
    await settleIfAny(h, key.id!);
    // The hub's first step is throttled (ARM asks for 6 s): its next step message waits on the queue meanwhile.
    h.stack.arm.faults.failNextRequests({
      status: 429,
      count: 1,
      method: 'GET',
      path: '/IotHubs/poison-hub',
      retryAfterSeconds: 6,
    });
    const planned = await h.api('POST', '/api/keys/rotate', { keyId: keyIdOf('poison-cmk') });
    expect(planned.status).toBe(200);
    const jobId = planned.body.jobId as string;
    const target = planned.body.createdVersion as string;
    await h.until(async () => (await h.job(jobId))?.hubs[0]?.result === 'throttled', 'the hub waiting on throttling');

    // Meanwhile the hub's row in this job is damaged: every step on it fails (so does the poison handler, for now).
    const jobs = h.table('RotationJobs');
    let row: { partitionKey: string; rowKey: string; from: string } | undefined;
    const version = target.split('/').pop()!;
    for await (const e of jobs.listEntities<{ hubName: string; from: string }>()) {
      if (e.hubName === 'poison-hub' && e.rowKey!.startsWith(`task|${version}|`)) {
        row = { partitionKey: e.partitionKey!, rowKey: e.rowKey!, from: e.from };
      }
    }
    expect(row).toBeDefined();
    const moves = logged(/Moving message to queue 'hub-steps-poison'/).length;
    const failures = logged(/Executed 'Functions\.hubSteps' \(Failed/).length;
    await jobs.updateEntity({ ...row!, from: '{this is not json' }, 'Merge');

    await h.until(
      () => logged(/Moving message to queue 'hub-steps-poison'/).length === moves + 1,
      'the step message moved to the poison queue',
      60_000,
    );
    expect(logged(/Executed 'Functions\.hubSteps' \(Failed/).length - failures).toBe(5);
    // The row is readable again: the poison handler (now, or when its message comes back) fails the hub.
    await jobs.updateEntity(row!, 'Merge');
    const job = await h.settle(jobId);

    expect(resultsOf(job)).toEqual({ 'poison-hub': 'failed' });
    expect(job.hubs[0]?.reason).toMatch(/poison queue/);
    expect(h.hubKey(ref)).toBe(key.id);
    expect(acceptedPuts(h, ref)).toBe(0);
    expect(await h.stack.arm.checkHubData(ref)).toMatchObject({ readable: true, keyIdentifier: key.id });
    expect(await hubAudit(h, 'poison-cmk', ref, target)).toMatchObject([
      { result: 'failed', message: expect.stringMatching(/poison queue/) },
    ]);
    expect(outcomesFor(h, ref)).toMatchObject([
      { type: 'CmkRotator.HubKeyUpdateFailed', data: { jobId, result: 'failed', reason: expect.any(String) } },
    ]);
    await h.until(
      async () => ((await h.queue('hub-steps-poison').getProperties()).approximateMessagesCount ?? 0) === 0,
      'the poison queue emptied',
    );

    // An operator's sync starts the failed hub over; it moves.
    const sync = await h.api('POST', '/api/keys/sync', { keyId: keyIdOf('poison-cmk') });
    expect(sync.body.jobId).toBe(jobIdFor(target));
    expect(resultsOf(await h.settle(jobId))).toEqual({ 'poison-hub': 'moved' });
    await expectAllOn(h, [ref], target);
    expect(acceptedPuts(h, ref)).toBe(1);
  }, 120_000);
});
