// GET /api/keys/status?keyId=...: the key's versions, the hubs that use it (each marked current or not) and the
// progress of the job moving them.
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import { handled, keyIdField, readQuery, operatorAuthLevel } from '../src/hosting/http';
import { appServices } from '../src/hosting/services';

const StatusQuery = z.strictObject({ keyId: keyIdField });

export function keyStatusHandler(rotator: () => Rotator) {
  return handled(async (request) => {
    const { keyId } = readQuery(request, StatusQuery);
    return { status: 200, jsonBody: await rotator().status(keyId) };
  });
}

app.http('keyStatus', {
  methods: ['GET'],
  authLevel: operatorAuthLevel,
  route: 'keys/status',
  handler: keyStatusHandler(() => appServices().rotator),
});
