// The whole chain as the app runs it: a process configured only by environment variables (IDENTITY_ENDPOINT /
// IDENTITY_HEADER, HTTPS_PROXY, NO_PROXY, NODE_EXTRA_CA_CERTS) using DefaultAzureCredential and the unmodified
// KeyClient / CryptographyClient with the vault's real URL: challenge → managed identity token → proxy → emulator.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdentityEndpoint } from '../src/identity';
import type { RunningIdentityEndpoint } from '../src/identity';
import { ensureDevCertificate } from '../src/tls';
import { VAULT_URL, startBed } from './keyvaultBed';
import type { Bed } from './keyvaultBed';

const CREDENTIAL_VARIABLES =
  /^(AZURE_|MSI_|IDENTITY_|IMDS_ENDPOINT$|DEFAULT_IDENTITY_CLIENT_ID$|HTTPS?_PROXY$|ALL_PROXY$|NO_PROXY$)/i;

const APP_SCRIPT = `
import { DefaultAzureCredential } from '@azure/identity';
import { CryptographyClient, KeyClient } from '@azure/keyvault-keys';
const out = {};
try {
  const credential = new DefaultAzureCredential();
  const keys = new KeyClient(process.env.VAULT_URL, credential);
  const key = await keys.createRsaKey('app-cmk', { keySize: 2048 });
  const versions = [];
  for await (const v of keys.listPropertiesOfKeyVersions('app-cmk')) versions.push(v.version);
  const crypto = new CryptographyClient(key.id, credential);
  const wrapped = await crypto.wrapKey('RSA-OAEP-256', Buffer.from('data-encryption-key'));
  const unwrapped = await crypto.unwrapKey('RSA-OAEP-256', wrapped.result);
  Object.assign(out, { ok: true, id: key.id, versions, plain: Buffer.from(unwrapped.result).toString() });
} catch (e) {
  Object.assign(out, { ok: false, error: String(e?.message ?? e), statusCode: e?.statusCode });
}
console.log(JSON.stringify(out));
`;

async function runApp(env: NodeJS.ProcessEnv): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', APP_SCRIPT], { cwd: process.cwd(), env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`app exited with ${code}: ${err}`);
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
}

describe('Key Vault emulator with the app-like client chain', () => {
  let bed: Bed;
  let identity: RunningIdentityEndpoint;
  let baseEnv: NodeJS.ProcessEnv;
  beforeAll(async () => {
    bed = await startBed();
    identity = await startIdentityEndpoint();
    baseEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!CREDENTIAL_VARIABLES.test(k)) baseEnv[k] = v;
    Object.assign(baseEnv, {
      VAULT_URL,
      IDENTITY_ENDPOINT: identity.endpoint,
      IDENTITY_HEADER: identity.header,
      HTTPS_PROXY: bed.proxy.url,
      NODE_EXTRA_CA_CERTS: ensureDevCertificate(path.resolve('.data/test-tls')).trustBundlePath,
    });
  });
  afterAll(async () => {
    await identity.close();
    await bed.close();
  });

  it('DefaultAzureCredential + KeyClient + CryptographyClient work by URL alone', async () => {
    const result = await runApp({ ...baseEnv, NO_PROXY: '127.0.0.1,localhost' });
    expect(result.error).toBeUndefined();
    expect(result.ok).toBe(true);
    expect(result.id).toMatch(new RegExp(`^${VAULT_URL}/keys/app-cmk/[0-9a-f]{32}$`));
    expect(result.versions).toHaveLength(1);
    expect(result.plain).toBe('data-encryption-key');
    expect(bed.sink.ofType('KeyNewVersionCreated').map((e) => e.subject)).toEqual(['app-cmk']);
  });

  it('needs NO_PROXY for the loopback identity endpoint once HTTPS_PROXY is set', async () => {
    // The SDK pipeline proxies plain-HTTP requests too; the CONNECT-only proxy turns the token request away.
    const result = await runApp(baseEnv);
    expect(result.ok).toBe(false);
    expect(String(result.error)).toMatch(/ManagedIdentityCredential: Network unreachable/);
  });
});
