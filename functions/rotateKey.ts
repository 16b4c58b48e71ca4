// POST /api/keys/rotate { keyId, dryRun?, reason? }: create a new version now and move every hub to it. Answers with
// the plan and the job id; the hubs then move step by step (GET /api/jobs/{id}).
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import { handled, keyIdField, readBody, operatorAuthLevel } from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

const RotateRequest = z.strictObject({
  keyId: keyIdField,
  dryRun: z.boolean({ error: 'must be true or false' }).optional().default(false),
  reason: z.string({ error: 'must be a string' }).trim().max(500, 'must be at most 500 characters').optional(),
  // Sent again with a retry, it makes the retry find the version the first attempt created.
  requestId: z
    .string({ error: 'must be a string' })
    .regex(/^[A-Za-z0-9._-]{1,128}$/, 'must be 1-128 letters, digits, dots, dashes or underscores')
    .optional(),
});

export function rotateKeyHandler(rotator: () => Rotator) {
  return handled(async (request, context) => {
    const { keyId, dryRun, reason, requestId } = await readBody(request, RotateRequest);
    const report = await rotator().rotate(
      keyId,
      { dryRun, ...(reason ? { reason } : {}), ...(requestId ? { requestId } : {}) },
      { correlationId: context.invocationId, log: invocationLogger(context) },
    );
    return { status: 200, jsonBody: report };
  });
}

app.http('rotateKey', {
  methods: ['POST'],
  authLevel: operatorAuthLevel,
  route: 'keys/rotate',
  handler: rotateKeyHandler(() => appServices().rotator),
});
