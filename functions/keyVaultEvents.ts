// Key Vault's Event Grid events (EventGridEvent or CloudEvents schema). A transient failure is rethrown so the
// host answers 5xx and Event Grid redelivers; everything else is recorded and acknowledged.
import { app } from '@azure/functions';
import { invocationLogger } from '../src/hosting/logger';
import { rotator } from '../src/hosting/services';

app.eventGrid('keyVaultEvents', {
  handler: async (event, context) => {
    await rotator.handleEvent(event, { correlationId: context.invocationId, log: invocationLogger(context) });
  },
});
