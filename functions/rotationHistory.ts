// GET /api/rotations?keyId=...&limit=&continuationToken=: audit records, newest first, page by page.
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import { handled, keyIdField, readQuery, operatorAuthLevel } from '../src/hosting/http';
import { appServices } from '../src/hosting/services';

const HistoryQuery = z.strictObject({
  keyId: keyIdField,
  limit: z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(1000, 'must be at most 1000')
    .optional()
    .default(50),
  continuationToken: z.string().min(1).max(2048, 'must be at most 2048 characters').optional(),
});

export function rotationHistoryHandler(rotator: () => Rotator) {
  return handled(async (request) => {
    const { keyId, limit, continuationToken } = readQuery(request, HistoryQuery);
    return { status: 200, jsonBody: await rotator().history(keyId, limit, continuationToken) };
  });
}

app.http('rotationHistory', {
  methods: ['GET'],
  authLevel: operatorAuthLevel,
  route: 'rotations',
  handler: rotationHistoryHandler(() => appServices().rotator),
});
