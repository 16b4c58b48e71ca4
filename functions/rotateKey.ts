// POST /api/keys/rotate { keyId, dryRun?, reason? }: create a new version now and move every hub to it.
import { app } from '@azure/functions';
import { z } from 'zod';
import { handled, keyIdField, readBody } from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { rotator } from '../src/hosting/services';

const RotateRequest = z.strictObject({
  keyId: keyIdField,
  dryRun: z.boolean({ error: 'must be true or false' }).optional().default(false),
  reason: z.string({ error: 'must be a string' }).trim().max(500, 'must be at most 500 characters').optional(),
});

app.http('rotateKey', {
  methods: ['POST'],
  authLevel: 'function',
  route: 'keys/rotate',
  handler: handled(async (request, context) => {
    const { keyId, dryRun, reason } = await readBody(request, RotateRequest);
    const report = await rotator.rotate(
      keyId,
      { dryRun, ...(reason ? { reason } : {}) },
      { correlationId: context.invocationId, log: invocationLogger(context) },
    );
    return { status: 200, jsonBody: report };
  }),
});
