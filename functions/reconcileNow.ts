// POST /api/reconcile: run the reconciler now and answer with what it found and did.
import { app } from '@azure/functions';
import type { Rotator } from '../src/application';
import { handled, operatorAuthLevel } from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

export function reconcileNowHandler(rotator: () => Rotator) {
  return handled(async (_request, context) => ({
    status: 200,
    jsonBody: await rotator().reconcile({ correlationId: context.invocationId, log: invocationLogger(context) }),
  }));
}

app.http('reconcileNow', {
  methods: ['POST'],
  authLevel: operatorAuthLevel,
  route: 'reconcile',
  handler: reconcileNowHandler(() => appServices().rotator),
});
