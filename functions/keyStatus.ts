// GET /api/keys/status?keyId=...: the key's versions and the hubs that use it, each marked current or not.
import { app } from '@azure/functions';
import { z } from 'zod';
import { handled, keyIdField, readQuery } from '../src/hosting/http';
import { rotator } from '../src/hosting/services';

const StatusQuery = z.object({ keyId: keyIdField });

app.http('keyStatus', {
  methods: ['GET'],
  authLevel: 'function',
  route: 'keys/status',
  handler: handled(async (request) => {
    const { keyId } = readQuery(request, StatusQuery);
    return { status: 200, jsonBody: await rotator.status(keyId) };
  }),
});
