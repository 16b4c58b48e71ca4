// POST /api/reconcile: run the reconciler now and answer with what it found and did.
import { app } from '@azure/functions';
import { handled } from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { rotator } from '../src/hosting/services';

app.http('reconcileNow', {
  methods: ['POST'],
  authLevel: 'function',
  route: 'reconcile',
  handler: handled(async (_request, context) => ({
    status: 200,
    jsonBody: await rotator.reconcile({ correlationId: context.invocationId, log: invocationLogger(context) }),
  })),
});
