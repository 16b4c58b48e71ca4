// The fake managed identity endpoint, checked with the real @azure/identity credentials in a child process:
// those read IDENTITY_ENDPOINT / IDENTITY_HEADER at construction, and the worker's own environment must not leak
// other credential sources (client secrets, workload identity, ...) into the chain.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_SERVICE_MSI_API_VERSION, startIdentityEndpoint } from '../src/identity';
import { freePort } from '../src/tcpPorts';
import type { RunningIdentityEndpoint } from '../src/identity';

/** Variables that would make another credential in DefaultAzureCredential's chain answer (or change MI's source). */
const CREDENTIAL_VARIABLES = /^(AZURE_|MSI_|IDENTITY_|IMDS_ENDPOINT$|DEFAULT_IDENTITY_CLIENT_ID$)/;

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!CREDENTIAL_VARIABLES.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** Runs an ES module snippet with node in the project root; resolves with its last stdout line parsed as JSON. */
async function runChild(code: string, env: NodeJS.ProcessEnv): Promise<unknown> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: process.cwd(), env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (exitCode !== 0) throw new Error(`child exited with ${exitCode}: ${err}`);
  const last = out.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as unknown;
}

const TOKEN_SCRIPT = `
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';
const claims = (t) => JSON.parse(Buffer.from(t.split('.')[1], 'base64url').toString());
const result = {};
for (const [name, make] of [
  ['default', () => new DefaultAzureCredential()],
  ['managedIdentity', () => new ManagedIdentityCredential()],
  ['userAssigned', () => new ManagedIdentityCredential({ clientId: '11111111-2222-3333-4444-555555555555' })],
]) {
  try {
    const token = await make().getToken('https://vault.azure.net/.default');
    result[name] = { ok: true, claims: claims(token.token), expiresOnTimestamp: token.expiresOnTimestamp, tokenType: token.tokenType };
  } catch (e) {
    result[name] = { ok: false, error: String(e && e.message || e) };
  }
}
console.log(JSON.stringify(result));
`;

interface ChildTokenResult {
  ok: boolean;
  error?: string;
  claims?: { aud: string; oid: string; exp: number };
  expiresOnTimestamp?: number;
  tokenType?: string;
}

describe('fake managed identity endpoint', () => {
  let identity: RunningIdentityEndpoint;
  beforeAll(async () => {
    identity = await startIdentityEndpoint();
  });
  afterAll(async () => {
    await identity.close();
  });

  it('serves DefaultAzureCredential and ManagedIdentityCredential (App Service source) a vault token', async () => {
    const result = (await runChild(
      TOKEN_SCRIPT,
      childEnv({ IDENTITY_ENDPOINT: identity.endpoint, IDENTITY_HEADER: identity.header }),
    )) as Record<string, ChildTokenResult>;
    for (const name of ['default', 'managedIdentity', 'userAssigned']) {
      const r = result[name];
      expect(r?.error).toBeUndefined();
      expect(r?.ok).toBe(true);
      expect(r?.claims?.aud).toBe('https://vault.azure.net');
      expect(r?.tokenType).toBe('Bearer');
      // expires_on travels as a string of epoch seconds; the SDK must have read it as such.
      expect(Math.abs((r?.expiresOnTimestamp ?? 0) - (r?.claims?.exp ?? 0) * 1000)).toBeLessThan(2000);
    }
    expect(result.userAssigned?.claims?.oid).toBe('11111111-2222-3333-4444-555555555555');
  });

  it('a credential holding the wrong secret gets no token', async () => {
    const result = (await runChild(
      TOKEN_SCRIPT,
      childEnv({ IDENTITY_ENDPOINT: identity.endpoint, IDENTITY_HEADER: 'not-the-secret' }),
    )) as Record<string, ChildTokenResult>;
    expect(result.managedIdentity?.ok).toBe(false);
    expect(result.managedIdentity?.error).toMatch(/X-IDENTITY-HEADER/);
    expect(result.default?.ok).toBe(false);
  });

  it('answers exactly the request msal-node makes and refuses others', async () => {
    const base = `${identity.endpoint}?api-version=${APP_SERVICE_MSI_API_VERSION}&resource=${encodeURIComponent('https://vault.azure.net')}`;
    const ok = await fetch(base, { headers: { 'X-IDENTITY-HEADER': identity.header } });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['access_token', 'client_id', 'expires_on', 'resource', 'token_type']);
    expect(body.resource).toBe('https://vault.azure.net');
    expect(body.token_type).toBe('Bearer');
    expect(typeof body.expires_on).toBe('string');

    expect((await fetch(base)).status).toBe(401);
    expect((await fetch(base, { headers: { 'X-IDENTITY-HEADER': 'x' } })).status).toBe(401);
    const noVersion = await fetch(`${identity.endpoint}?resource=x`, {
      headers: { 'X-IDENTITY-HEADER': identity.header },
    });
    expect(noVersion.status).toBe(400);
    const noResource = await fetch(`${identity.endpoint}?api-version=${APP_SERVICE_MSI_API_VERSION}`, {
      headers: { 'X-IDENTITY-HEADER': identity.header },
    });
    expect(noResource.status).toBe(400);
    const post = await fetch(base, { method: 'POST', headers: { 'X-IDENTITY-HEADER': identity.header } });
    expect(post.status).toBe(405);
  });

  it('takes a fixed port and header when asked', async () => {
    const port = await freePort();
    const other = await startIdentityEndpoint({ port, header: 'fixed-secret' });
    try {
      expect(other.port).toBe(port);
      expect(other.header).toBe('fixed-secret');
      expect(other.endpoint).toBe(`http://127.0.0.1:${port}/msi/token`);
      expect(identity.header).toMatch(/^[0-9a-f]{48}$/);
    } finally {
      await other.close();
    }
  });
});
