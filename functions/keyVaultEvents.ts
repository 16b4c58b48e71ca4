// Key Vault's Event Grid events (EventGridEvent or CloudEvents schema). Answered once the move is planned; a
// transient failure is rethrown so the host answers 5xx and Event Grid redelivers; everything else is recorded and
// acknowledged.
import { app } from '@azure/functions';
import type { EventGridEvent, InvocationContext } from '@azure/functions';
import type { Rotator } from '../src/application';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

export function keyVaultEventsHandler(rotator: () => Rotator) {
  return async (event: EventGridEvent, context: InvocationContext): Promise<void> => {
    await rotator().handleEvent(event, { correlationId: context.invocationId, log: invocationLogger(context) });
  };
}

app.eventGrid('keyVaultEvents', { handler: keyVaultEventsHandler(() => appServices().rotator) });
