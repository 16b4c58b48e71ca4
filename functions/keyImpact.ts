// GET /api/keys/impact?keyId=...[&version=...]: the hubs that would lose access to their data if that version (the
// keyId's own version, or `version`), or with none the whole key, were disabled. Read live; writes nothing.
import { app } from '@azure/functions';
import * as z from 'zod';
import type { Rotator } from '../src/application';
import { handled, keyRefField, readQuery, versionField, operatorAuthLevel } from '../src/hosting/http';
import { appServices } from '../src/hosting/services';

const ImpactQuery = z
  .strictObject({ keyId: keyRefField, version: versionField.optional() })
  .superRefine(({ keyId, version }, ctx) => {
    if (version && keyId.version && version.toLowerCase() !== keyId.version.toLowerCase()) {
      ctx.addIssue({ code: 'custom', path: ['version'], message: `differs from the keyId's version ${keyId.version}` });
    }
  });

export function keyImpactHandler(rotator: () => Rotator) {
  return handled(async (request) => {
    const { keyId, version } = readQuery(request, ImpactQuery);
    const { vaultUrl, name } = keyId;
    return { status: 200, jsonBody: await rotator().impact({ vaultUrl, name }, version ?? keyId.version) };
  });
}

app.http('keyImpact', {
  methods: ['GET'],
  authLevel: operatorAuthLevel,
  route: 'keys/impact',
  handler: keyImpactHandler(() => appServices().rotator),
});
