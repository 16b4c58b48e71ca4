// POST /api/keys/retire { keyId, dryRun?, graceDays? }: disable the superseded versions no hub uses any more, once a
// newer usable version has been usable for the grace period. Answers every version with its decision.
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import { dryRunField, handled, keyIdField, readBody, operatorAuthLevel } from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

const RetireRequest = z.strictObject({
  keyId: keyIdField,
  dryRun: dryRunField.optional().default(false),
  graceDays: z
    .number({ error: 'must be a number of days' })
    .int('must be a whole number of days')
    .min(0, 'must be 0 or more')
    .max(3650, 'must be at most 3650')
    .optional(),
});

export function retireVersionsHandler(rotator: () => Rotator) {
  return handled(async (request, context) => {
    const { keyId, dryRun, graceDays } = await readBody(request, RetireRequest);
    const report = await rotator().retire(
      keyId,
      { dryRun, ...(graceDays !== undefined ? { graceDays } : {}) },
      { correlationId: context.invocationId, log: invocationLogger(context) },
    );
    return { status: 200, jsonBody: report };
  });
}

app.http('retireVersions', {
  methods: ['POST'],
  authLevel: operatorAuthLevel,
  route: 'keys/retire',
  handler: retireVersionsHandler(() => appServices().rotator),
});
