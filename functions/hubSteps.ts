// Queue trigger: one step of one hub's move (read and PUT, a look at the running update, verify). The host deletes
// the message when this returns; a throw makes it visible again, and after maxDequeueCount (host.json) it goes to
// hub-steps-poison.
import { app } from '@azure/functions';
import type { InvocationContext } from '@azure/functions';
import type { Rotator } from '../src/application';
import { HUB_STEPS_QUEUE } from '../src/adapters/queueNames';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';
import { parseStepMessage } from '../src/hosting/stepMessage';

export function hubStepsHandler(rotator: () => Rotator) {
  return async (message: unknown, context: InvocationContext): Promise<void> => {
    const log = invocationLogger(context);
    const step = parseStepMessage(message);
    await rotator().advanceHub(step, { correlationId: context.invocationId, log });
  };
}

app.storageQueue('hubSteps', {
  queueName: HUB_STEPS_QUEUE,
  connection: 'AzureWebJobsStorage',
  handler: hubStepsHandler(() => appServices().rotator),
});
