// POST /api/keys/sync { keyId, dryRun? }: move hubs to the latest usable version without creating one. Answers with
// the plan and the job id; the hubs then move step by step (GET /api/jobs/{id}).
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import { handled, keyIdField, readBody, operatorAuthLevel } from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

const SyncRequest = z.strictObject({
  keyId: keyIdField,
  dryRun: z.boolean({ error: 'must be true or false' }).optional().default(false),
});

export function syncKeyHandler(rotator: () => Rotator) {
  return handled(async (request, context) => {
    const { keyId, dryRun } = await readBody(request, SyncRequest);
    const report = await rotator().sync(
      keyId,
      { dryRun },
      { correlationId: context.invocationId, log: invocationLogger(context) },
    );
    return { status: 200, jsonBody: report };
  });
}

app.http('syncKey', {
  methods: ['POST'],
  authLevel: operatorAuthLevel,
  route: 'keys/sync',
  handler: syncKeyHandler(() => appServices().rotator),
});
