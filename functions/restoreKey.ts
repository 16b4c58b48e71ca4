// POST /api/keys/restore { keyId, confirm, dryRun? }: re-enable exactly the versions the key's last revocation
// disabled (as the ledger recorded them); the hubs on them read their data again.
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import {
  dryRunField,
  handled,
  keyIdField,
  readBody,
  requireConfirmation,
  operatorAuthLevel,
} from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

const RestoreRequest = z
  .strictObject({
    keyId: keyIdField,
    dryRun: dryRunField.optional().default(false),
    confirm: z.string({ error: "must be a string: the key's name" }).optional(),
  })
  .superRefine(requireConfirmation);

export function restoreKeyHandler(rotator: () => Rotator) {
  return handled(async (request, context) => {
    const { keyId, dryRun, confirm } = await readBody(request, RestoreRequest);
    const report = await rotator().restore(
      keyId,
      { dryRun, ...(confirm !== undefined ? { confirm } : {}) },
      { correlationId: context.invocationId, log: invocationLogger(context) },
    );
    return { status: 200, jsonBody: report };
  });
}

app.http('restoreKey', {
  methods: ['POST'],
  authLevel: operatorAuthLevel,
  route: 'keys/restore',
  handler: restoreKeyHandler(() => appServices().rotator),
});
