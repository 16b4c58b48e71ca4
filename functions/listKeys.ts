// GET /api/keys: every key the service manages, with its versions, health, next rotation and hubs per standing.
import { app } from '@azure/functions';
import type { Rotator } from '../src/application';
import { handled, operatorAuthLevel } from '../src/hosting/http';
import { appServices } from '../src/hosting/services';

export function listKeysHandler(rotator: () => Rotator) {
  return handled(async () => ({ status: 200, jsonBody: await rotator().keys() }));
}

app.http('listKeys', {
  methods: ['GET'],
  authLevel: operatorAuthLevel,
  route: 'keys',
  handler: listKeysHandler(() => appServices().rotator),
});
