// GET /api/dashboard: the operator dashboard, one self-contained page (built into dist/dashboard.html beside the
// app) that reads the other operator routes with the key it was opened with.
import { app } from '@azure/functions';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { handled, operatorAuthLevel } from '../src/hosting/http';

/** The page carries its own Content-Security-Policy; these headers keep it out of frames, caches and referrers. */
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "frame-ancestors 'none'",
};

export function dashboardHandler(page: () => Promise<string>) {
  return handled(async () => ({ status: 200, headers: PAGE_HEADERS, body: await page() }));
}

let cached: Promise<string> | undefined;
/** Read once per instance; a failed read is tried again on the next request. */
function builtPage(): Promise<string> {
  cached ??= readFile(path.join(__dirname, 'dashboard.html'), 'utf8').catch((error: unknown) => {
    cached = undefined;
    throw error;
  });
  return cached;
}

app.http('dashboard', {
  methods: ['GET'],
  authLevel: operatorAuthLevel,
  route: 'dashboard',
  handler: dashboardHandler(builtPage),
});
