// GET /api/health: "ok" when the app's settings are valid, 503 "misconfigured" otherwise (anonymous: no details).
import { app } from '@azure/functions';
import type { HttpResponseInit } from '@azure/functions';
import { appServices } from '../src/hosting/services';

export function healthHandler(services: () => unknown) {
  return (): Promise<HttpResponseInit> => {
    try {
      services();
      return Promise.resolve({ status: 200, jsonBody: { status: 'ok' } });
    } catch {
      return Promise.resolve({ status: 503, jsonBody: { status: 'misconfigured' } });
    }
  };
}

app.http('health', {
  methods: ['GET'],
  authLevel: 'anonymous',
  route: 'health',
  handler: healthHandler(appServices),
});
