// POST /api/keys/sync { keyId, dryRun? }: move hubs to the latest usable version without creating one.
import { app } from '@azure/functions';
import { z } from 'zod';
import { handled, keyIdField, readBody } from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { rotator } from '../src/hosting/services';

const SyncRequest = z.strictObject({
  keyId: keyIdField,
  dryRun: z.boolean({ error: 'must be true or false' }).optional().default(false),
});

app.http('syncKey', {
  methods: ['POST'],
  authLevel: 'function',
  route: 'keys/sync',
  handler: handled(async (request, context) => {
    const { keyId, dryRun } = await readBody(request, SyncRequest);
    const report = await rotator.sync(
      keyId,
      { dryRun },
      { correlationId: context.invocationId, log: invocationLogger(context) },
    );
    return { status: 200, jsonBody: report };
  }),
});
