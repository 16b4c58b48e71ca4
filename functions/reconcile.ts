// Timer: scan keys and hubs for drift and finish unfinished jobs (schedule: ROTATOR_RECONCILE_SCHEDULE, hourly by default).
import { app } from '@azure/functions';
import { invocationLogger } from '../src/hosting/logger';
import { config, rotator } from '../src/hosting/services';

app.timer('reconcile', {
  schedule: config.reconcileSchedule,
  handler: async (_timer, context) => {
    await rotator.reconcile({ correlationId: context.invocationId, log: invocationLogger(context) });
  },
});
