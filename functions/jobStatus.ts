// GET /api/jobs/{id}: a rotation job's progress (moved / in flight / waiting on throttling / retrying / failed) and
// every hub's state. The id is the `jobId` that rotate and sync answer with.
import { app } from '@azure/functions';
import type { Rotator } from '../src/application';
import { handled, operatorAuthLevel } from '../src/hosting/http';
import { appServices } from '../src/hosting/services';

export function jobStatusHandler(rotator: () => Rotator) {
  return handled(async (request) => ({ status: 200, jsonBody: await rotator().job(request.params.id ?? '') }));
}

app.http('jobStatus', {
  methods: ['GET'],
  authLevel: operatorAuthLevel,
  route: 'jobs/{id}',
  handler: jobStatusHandler(() => appServices().rotator),
});
