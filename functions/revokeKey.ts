// POST /api/keys/revoke { keyId, version?, dryRun? (default true), confirm? }: disable a version, or every enabled
// version of the key. A dry run (the default) lists the hubs that would lose access; a real revocation needs
// "dryRun": false and "confirm" set to the key's name.
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import {
  dryRunField,
  handled,
  keyIdField,
  readBody,
  requireConfirmation,
  versionField,
  operatorAuthLevel,
} from '../src/hosting/http';
import { invocationLogger } from '../src/hosting/logger';
import { appServices } from '../src/hosting/services';

const RevokeRequest = z
  .strictObject({
    keyId: keyIdField,
    version: versionField.optional(),
    dryRun: dryRunField.optional().default(true),
    confirm: z.string({ error: "must be a string: the key's name" }).optional(),
  })
  .superRefine(requireConfirmation);

export function revokeKeyHandler(rotator: () => Rotator) {
  return handled(async (request, context) => {
    const { keyId, version, dryRun, confirm } = await readBody(request, RevokeRequest);
    const report = await rotator().revoke(
      keyId,
      { dryRun, ...(version ? { version } : {}), ...(confirm !== undefined ? { confirm } : {}) },
      { correlationId: context.invocationId, log: invocationLogger(context) },
    );
    return { status: 200, jsonBody: report };
  });
}

app.http('revokeKey', {
  methods: ['POST'],
  authLevel: operatorAuthLevel,
  route: 'keys/revoke',
  handler: revokeKeyHandler(() => appServices().rotator),
});
