// Queue trigger on hub-steps-poison: a step message the host gave up on. The hub is recorded failed, with a
// CmkRotator.HubKeyUpdateFailed outcome, unless its move went on meanwhile: nothing is lost silently.
import { app } from '@azure/functions';
import type { InvocationContext } from '@azure/functions';
import type { Rotator } from '../src/application';
import { HUB_STEPS_POISON_QUEUE } from '../src/adapters/queueNames';
import { errorCode, safeMessage } from '../src/domain/errors';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';
import { parseStepMessage } from '../src/hosting/stepMessage';

export function hubStepsPoisonHandler(rotator: () => Rotator) {
  return async (message: unknown, context: InvocationContext): Promise<void> => {
    const log = invocationLogger(context);
    let step;
    try {
      step = parseStepMessage(message);
    } catch (error) {
      // Nothing to fail: the message names no hub. It is logged for an operator and dropped.
      log.error('step.poison-unreadable', { errorCode: errorCode(error), message: safeMessage(error) });
      return;
    }
    await rotator().failPoisonedStep(step, { correlationId: context.invocationId, log });
  };
}

app.storageQueue('hubStepsPoison', {
  queueName: HUB_STEPS_POISON_QUEUE,
  connection: 'AzureWebJobsStorage',
  handler: hubStepsPoisonHandler(() => appServices().rotator),
});
