// Timer: scan keys and hubs for drift and restart quiet jobs (schedule: ROTATOR_RECONCILE_SCHEDULE, hourly by default).
import { app } from '@azure/functions';
import type { InvocationContext, Timer } from '@azure/functions';
import type { Rotator } from '../src/application';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

export function reconcileHandler(rotator: () => Rotator) {
  return async (_timer: Timer, context: InvocationContext): Promise<void> => {
    await rotator().reconcile({ correlationId: context.invocationId, log: invocationLogger(context) });
  };
}

app.timer('reconcile', {
  // Read here without validation so the timer stays registered with a bad configuration (validated on first use).
  schedule: process.env.ROTATOR_RECONCILE_SCHEDULE?.trim() || '0 0 * * * *',
  handler: reconcileHandler(() => appServices().rotator),
});
