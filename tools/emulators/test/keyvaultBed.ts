// Test bed for the Key Vault emulator: the emulator behind the CONNECT proxy, a real KeyClient configured by URL
// (https://demo.vault.azure.net) and a raw HTTPS helper for what the SDK would refuse to send.
import https from 'node:https';
import path from 'node:path';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { CryptographyClient, KeyClient } from '@azure/keyvault-keys';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { issueToken } from '../src/auth';
import { EmulatorClock } from '../src/clock';
import type { EventSink, KeyVaultEventGridEvent } from '../src/contracts';
import { KEY_VAULT_HOST_PATTERN, startKeyVaultEmulator } from '../src/keyvault';
import type { KeyVaultEmulatorOptions, RunningKeyVaultEmulator } from '../src/keyvault';
import { startAzureProxy } from '../src/proxy';
import type { RunningProxy } from '../src/proxy';
import { ensureDevCertificate } from '../src/tls';

export const VAULT = 'demo';
export const VAULT_URL = `https://${VAULT}.vault.azure.net`;

/** Hands out the same unsigned tokens the fake managed identity does, for whatever resource is asked. */
export const testCredential: TokenCredential = {
  getToken: (scopes): Promise<AccessToken> => {
    const scope = Array.isArray(scopes) ? (scopes[0] ?? '') : scopes;
    return Promise.resolve({
      token: issueToken(scope.replace(/\/\.default$/, '')),
      expiresOnTimestamp: Date.now() + 3_600_000,
      tokenType: 'Bearer',
    });
  },
};

export class RecordingSink implements EventSink {
  readonly events: KeyVaultEventGridEvent[] = [];
  publish(events: KeyVaultEventGridEvent[]): void {
    this.events.push(...events);
  }
  ofType(type: string): KeyVaultEventGridEvent[] {
    return this.events.filter((e) => e.eventType === `Microsoft.KeyVault.${type}`);
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown> | undefined;
}

export interface Bed {
  clock: EmulatorClock;
  sink: RecordingSink;
  kv: RunningKeyVaultEmulator;
  proxy: RunningProxy;
  keyClient: KeyClient;
  clientOptions: { proxyOptions: { host: string; port: number }; retryOptions: { maxRetries: number } };
  cryptoClient(keyId: string): CryptographyClient;
  /** A request to https://<host><path> through the proxy; a bearer token for the vault unless `token` says otherwise. */
  raw(
    method: string,
    pathAndQuery: string,
    opts?: { body?: unknown; token?: string | null; host?: string },
  ): Promise<RawResponse>;
  /** Restarts the emulator on the same options (and state file), re-pointing the proxy. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startBed(options: Partial<KeyVaultEmulatorOptions> = {}): Promise<Bed> {
  const tls = ensureDevCertificate(path.resolve('.data/test-tls'));
  const clock = options.clock ?? new EmulatorClock();
  const sink = new RecordingSink();
  const emulatorOptions: KeyVaultEmulatorOptions = {
    tls: { cert: tls.cert, key: tls.key },
    clock,
    events: sink,
    vaults: [VAULT],
    expiryCheckIntervalMs: 0,
    ...options,
  };
  let kv = await startKeyVaultEmulator(emulatorOptions);
  const proxy = await startAzureProxy({ routes: [{ host: KEY_VAULT_HOST_PATTERN, port: kv.port }] });
  const clientOptions = {
    proxyOptions: { host: 'http://127.0.0.1', port: proxy.port },
    retryOptions: { maxRetries: 0 },
  };
  const agent = new HttpsProxyAgent(proxy.url);
  const vaultToken = issueToken('https://vault.azure.net');

  const raw: Bed['raw'] = (method, pathAndQuery, opts = {}) =>
    new Promise((resolve, reject) => {
      const token = opts.token === undefined ? vaultToken : opts.token;
      const text = opts.body === undefined ? undefined : JSON.stringify(opts.body);
      const req = https.request(
        `https://${opts.host ?? `${VAULT}.vault.azure.net`}${pathAndQuery}`,
        {
          method,
          agent,
          headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(text ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {}),
          },
        },
        (res) => {
          let data = '';
          res.on('data', (d: Buffer) => (data += d.toString()));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              json: data ? (JSON.parse(data) as Record<string, unknown>) : undefined,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(text);
    });

  const bed: Bed = {
    clock,
    sink,
    get kv() {
      return kv;
    },
    proxy,
    keyClient: new KeyClient(VAULT_URL, testCredential, clientOptions),
    clientOptions,
    cryptoClient: (keyId) => new CryptographyClient(keyId, testCredential, clientOptions),
    raw,
    restart: async () => {
      await kv.close();
      kv = await startKeyVaultEmulator(emulatorOptions);
      proxy.setRoute({ host: KEY_VAULT_HOST_PATTERN, port: kv.port });
    },
    close: async () => {
      agent.destroy();
      await proxy.close();
      await kv.close();
    },
  };
  return bed;
}

export const DAY = 86_400;
