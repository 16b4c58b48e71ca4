// GET /api/health: the app loaded with a valid configuration and can serve.
import { app } from '@azure/functions';
import '../src/hosting/services';

app.http('health', {
  methods: ['GET'],
  authLevel: 'anonymous',
  route: 'health',
  handler: () => Promise.resolve({ status: 200, jsonBody: { status: 'ok' } }),
});
