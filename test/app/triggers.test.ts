// The queue, Event Grid and timer functions, called as the host calls them (an InvocationContext of the library's
// test mode): what they hand the rotator, what they refuse, and what they let the host see (a throw: redelivery).
import { describe, expect, it, vi } from 'vitest';
import { hubStepsHandler } from '../../functions/hubSteps';
import { hubStepsPoisonHandler } from '../../functions/hubStepsPoison';
import { keyVaultEventsHandler } from '../../functions/keyVaultEvents';
import { reconcileHandler } from '../../functions/reconcile';
import { HUBS_PER_MESSAGE } from '../../src/domain/hubStep';
import { UpstreamUnavailableError, ValidationError } from '../../src/domain/errors';
import type { HubStepMessage } from '../../src/domain/ports';
import { KEY, fakeRotator, hubId, keyVaultEvent } from '../fakes/rotator';
import { invocation, stubRotator } from './helpers';

const VERSION = 'c7254b6c8a5f4e0b9d1e2f3a4b5c6d7e';
const MESSAGE: HubStepMessage = {
  key: KEY,
  targetVersion: VERSION,
  hubs: [
    { hubId: hubId('hub'), step: 3 },
    { hubId: hubId('hub-2'), step: 0 },
  ],
};
const hubAt = (step: number) => ({ hubId: hubId('hub'), step });

async function validationError(work: Promise<unknown>): Promise<ValidationError> {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ValidationError);
  return error as ValidationError;
}

describe('hubSteps (queue trigger)', () => {
  it('hands a valid message to the rotator, with the invocation as correlation id', async () => {
    const advanceHub = vi.fn(() => Promise.resolve());
    const { context } = invocation('hubSteps');
    await hubStepsHandler(() => stubRotator({ advanceHub }))(
      { ...MESSAGE, key: { vaultUrl: 'https://Contoso.Vault.Azure.Net/', name: 'hub-cmk' } },
      context,
    );
    expect(advanceHub).toHaveBeenCalledWith(MESSAGE, expect.objectContaining({ correlationId: context.invocationId }));
  });

  it('hands a group of the most hubs a message may carry (100), and the queue’s ordinary group (32)', async () => {
    const advanceHub = vi.fn(() => Promise.resolve());
    const { context } = invocation('hubSteps');
    for (const size of [100, HUBS_PER_MESSAGE]) {
      const group = { ...MESSAGE, hubs: Array.from({ length: size }, (_, i) => ({ hubId: hubId(`h-${i}`), step: i })) };
      await hubStepsHandler(() => stubRotator({ advanceHub }))(group, context);
      expect(advanceHub).toHaveBeenLastCalledWith(group, expect.anything());
    }
  });

  it.each([
    ['not an object', 'hello', ['message']],
    ['no step', { ...MESSAGE, hubs: [{ hubId: hubId('hub') }] }, ['hubs.0.step']],
    ['a negative step', { ...MESSAGE, hubs: [hubAt(1), hubAt(-1)] }, ['hubs.1.step']],
    ['no hubs', { ...MESSAGE, hubs: [] }, ['hubs']],
    ['more than 100 hubs', { ...MESSAGE, hubs: Array.from({ length: 101 }, (_, i) => hubAt(i)) }, ['hubs']],
    [
      'a hub with an empty id and an unknown field',
      { ...MESSAGE, hubs: [{ hubId: '', step: 1, x: 1 }] },
      ['hubs.0', 'hubs.0.hubId'],
    ],
    ['the former one-hub shape', { key: KEY, targetVersion: VERSION, hubId: hubId('hub'), step: 3 }, ['hubs', '']],
    ['a vault that is not one', { ...MESSAGE, key: { vaultUrl: 'http://evil', name: 'hub-cmk' } }, ['key.vaultUrl']],
    ['a bad version and an unknown field', { ...MESSAGE, targetVersion: 'v-1', extra: 1 }, ['', 'targetVersion']],
  ])('rejects a message with %s (ValidationError naming the fields), calling nothing', async (_what, input, named) => {
    const advanceHub = vi.fn(() => Promise.resolve());
    const { context } = invocation('hubSteps');
    const error = await validationError(hubStepsHandler(() => stubRotator({ advanceHub }))(input, context));
    expect(error.problems.map((p) => p.field).sort()).toEqual(named.map((f) => f || 'message'));
    expect(advanceHub).not.toHaveBeenCalled();
  });

  it('lets a failure of the ledger or queue through, so the host makes the message visible again', async () => {
    const { context } = invocation('hubSteps');
    const failing = stubRotator({ advanceHub: () => Promise.reject(new UpstreamUnavailableError('the jobs table')) });
    await expect(hubStepsHandler(() => failing)(MESSAGE, context)).rejects.toBeInstanceOf(UpstreamUnavailableError);
  });
});

describe('hubStepsPoison (queue trigger)', () => {
  it('drops an unreadable message, logging it for an operator', async () => {
    const failPoisonedStep = vi.fn(() => Promise.resolve());
    const { context, logs } = invocation('hubStepsPoison');
    await expect(
      hubStepsPoisonHandler(() => stubRotator({ failPoisonedStep }))({ hubId: 'x' }, context),
    ).resolves.toBeUndefined();
    expect(failPoisonedStep).not.toHaveBeenCalled();
    expect(logs).toContainEqual({
      level: 'error',
      text: expect.stringMatching(/^step\.poison-unreadable .*INVALID_INPUT/),
    });
  });

  it('fails the hubs a readable message names: recorded failed, each with a HubKeyUpdateFailed outcome', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    t.keyVault.addVersion(KEY);
    const hubs = [t.hubs.add(hubId('hub'), v1.id), t.hubs.add(hubId('hub-2'), v1.id)];
    await t.rotator.sync(KEY, { dryRun: false }, t.invocation);
    const [message] = t.steps.takeDue();
    expect(message?.hubs).toHaveLength(2);
    const { context } = invocation('hubStepsPoison');

    await hubStepsPoisonHandler(() => t.rotator)(JSON.parse(JSON.stringify(message)), context);

    for (const hub of hubs) {
      expect(t.jobs.taskOf(hub)).toMatchObject({ state: 'failed', recorded: true });
      expect(t.outcomes.sent).toContainEqual(
        expect.objectContaining({
          type: 'CmkRotator.HubKeyUpdateFailed',
          subject: hub,
          data: expect.objectContaining({ correlationId: context.invocationId }),
        }),
      );
    }
    expect(t.outcomes.sent).toHaveLength(2);
  });
});

describe('keyVaultEvents (Event Grid trigger) and reconcile (timer)', () => {
  it('hands the event to the rotator; a transient failure is thrown (Event Grid redelivers), the rest acknowledged', async () => {
    const t = fakeRotator();
    const v1 = t.keyVault.addVersion(KEY);
    const v2 = t.keyVault.addVersion(KEY);
    t.hubs.add(hubId('hub'), v1.id);
    const { context } = invocation('keyVaultEvents');
    const handler = keyVaultEventsHandler(() => t.rotator);
    await handler(keyVaultEvent('KeyNewVersionCreated', v2.id) as never, context);
    expect(t.steps.sent).toBe(1);
    await expect(handler({ id: 'x', eventType: 'nonsense' } as never, context)).resolves.toBeUndefined();

    // A repeat of the event joins the planned job without listing hubs: Key Vault is what fails here.
    vi.spyOn(t.keyVault, 'getVersion').mockRejectedValueOnce(new UpstreamUnavailableError('Key Vault'));
    await expect(handler(keyVaultEvent('KeyNewVersionCreated', v2.id) as never, context)).rejects.toBeInstanceOf(
      UpstreamUnavailableError,
    );
  });

  it('the timer runs the reconciler under the invocation’s id', async () => {
    const reconcile = vi.fn(() =>
      Promise.resolve({
        correlationId: 'x',
        keysScanned: 0,
        drift: [],
        rotations: [],
        resumedJobs: 0,
        revokedKeys: [],
        retired: [],
        failures: [],
      }),
    );
    const { context } = invocation('reconcile');
    await reconcileHandler(() => stubRotator({ reconcile }))({} as never, context);
    expect(reconcile).toHaveBeenCalledWith(expect.objectContaining({ correlationId: context.invocationId }));
  });
});
