// The Key Vault emulator (keys): an HTTPS server answering for https://<vault>.vault.azure.net (the CONNECT proxy sends
// those host names here), the in-process KeyVaultCrypto the emulated IoT hubs use, and admin controls for tests.
//
// Clients need nothing special: the unmodified KeyClient / CryptographyClient reach it by URL through HTTPS_PROXY,
// authenticate through the challenge (a token for https://vault.azure.net, e.g. from the fake managed identity) and
// trust the emulators' CA through NODE_EXTRA_CA_CERTS.
import https from 'node:https';
import type { EmulatorClock } from '../clock';
import type { EventSink, KeyVaultCrypto, KeyVaultEventGridEvent } from '../contracts';
import { KeyUseError } from '../contracts';
import { createKeyVaultHandler } from './http';
import type { AdminApi } from './http';
import { KEY_VAULT_DNS_SUFFIX, KeyVaultError, KeyVaultStore, vaultNameFromHost, vaultUrl } from './store';
import type { CryptoOperation, RsaAlgorithm } from './store';
import { listenOnLoopback } from '../tcpPorts';

export { KEY_VAULT_RESOURCE } from './http';
export { KeyVaultError, vaultUrl } from './store';

/** Proxy route pattern for every vault the emulator serves. */
export const KEY_VAULT_HOST_PATTERN = `*.${KEY_VAULT_DNS_SUFFIX}`;

export interface KeyVaultEmulatorOptions {
  tls: { cert: string; key: string };
  clock: EmulatorClock;
  events?: EventSink;
  /** JSON state (keys with their private parts) written atomically after every change and reloaded on start. */
  stateFile?: string;
  port?: number;
  /** Vault names served, e.g. ['demo'] → https://demo.vault.azure.net; any name when omitted. */
  vaults?: string[];
  /** For the events' `topic` (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>). */
  subscriptionId?: string;
  resourceGroup?: string;
  /** Tenant named in the bearer challenge (`authorization="https://login.microsoftonline.com/<tenant>"`). */
  tenantId?: string;
  /** Page size of list operations without maxresults (Key Vault: 25). */
  pageSize?: number;
  /** How often expiry is checked besides on every clock advance (ms; 0 turns the timer off). */
  expiryCheckIntervalMs?: number;
  /** 'current' (Key Vault's documented behaviour: expiry events for a key's current version) or 'all' versions. */
  expiryEventsFor?: 'current' | 'all';
  /** Refuse unwrap/decrypt outside nbf/exp too (Key Vault allows them; see store.ts). Default false. */
  enforceValidityOnUnwrap?: boolean;
  /** Algorithm of the in-process `crypto` (the REST API takes it per request). Default RSA-OAEP-256. */
  cryptoAlgorithm?: RsaAlgorithm;
}

export interface KeyVaultAdmin {
  /** Moves the shared clock forward and waits for the expiry checks that became due. */
  advanceClock(seconds: number): Promise<Date>;
  now(): Date;
  /** Every event emitted so far (also kept across restarts with a state file). */
  events(): KeyVaultEventGridEvent[];
  /** Runs the expiry check now and waits for it. */
  checkExpiry(): Promise<void>;
  /** Forgets all keys and events. */
  reset(): void;
  vaultUrl(vault: string): string;
}

export interface RunningKeyVaultEmulator {
  port: number;
  close(): Promise<void>;
  crypto: KeyVaultCrypto;
  admin: KeyVaultAdmin;
}

export const DEFAULT_SUBSCRIPTION_ID = '00000000-0000-0000-0000-000000000000';
export const DEFAULT_RESOURCE_GROUP = 'rg-local';
export const DEFAULT_TENANT_ID = '72f988bf-0000-0000-0000-000000000000';

const USE_ERROR_CODES: Record<string, KeyUseError['code']> = {
  KeyDisabled: 'KeyDisabled',
  KeyExpired: 'KeyExpired',
  KeyNotYetValid: 'KeyNotYetValid',
  KeyOperationForbidden: 'OperationNotAllowed',
};

/** `https://<vault>.vault.azure.net/keys/<name>[/<version>]` → its parts, or a BadParameter KeyUseError. */
export function parseKeyIdentifier(keyIdentifier: string): { vault: string; name: string; version?: string } {
  let url: URL;
  try {
    url = new URL(keyIdentifier);
  } catch {
    throw new KeyUseError('BadParameter', `Not a key identifier: ${keyIdentifier}`);
  }
  const vault = vaultNameFromHost(url.host);
  const [collection, name, version, ...rest] = url.pathname.split('/').slice(1);
  if (url.protocol !== 'https:' || !vault || collection !== 'keys' || !name || rest.length > 0) {
    throw new KeyUseError('BadParameter', `Not a Key Vault key identifier: ${keyIdentifier}`);
  }
  return { vault, name: decodeURIComponent(name), ...(version ? { version: decodeURIComponent(version) } : {}) };
}

/** Key Vault's refusal as the reason a hub is given (KeyUseError); anything else is rethrown as an Error. */
function asKeyUseError(error: unknown): Error {
  if (error instanceof KeyUseError) return error;
  if (error instanceof KeyVaultError) {
    const code: KeyUseError['code'] =
      error.status === 404 ? 'KeyNotFound' : (USE_ERROR_CODES[error.innerCode ?? ''] ?? 'BadParameter');
    return new KeyUseError(code, error.message);
  }
  return error instanceof Error ? error : new Error(String(error));
}

function inProcessCrypto(store: KeyVaultStore, algorithm: RsaAlgorithm): KeyVaultCrypto {
  const run = (keyIdentifier: string, operation: CryptoOperation, data: Buffer): Promise<Buffer> => {
    try {
      const { vault, name, version } = parseKeyIdentifier(keyIdentifier);
      return Promise.resolve(store.cryptoOperation(vault, name, version, operation, algorithm, data).result);
    } catch (error) {
      return Promise.reject(asKeyUseError(error));
    }
  };
  return {
    wrapKey: (keyIdentifier, plaintext) => run(keyIdentifier, 'wrapKey', plaintext),
    unwrapKey: (keyIdentifier, wrapped) => run(keyIdentifier, 'unwrapKey', wrapped),
    unwrapRefusal: (keyIdentifier) => {
      try {
        const { vault, name, version } = parseKeyIdentifier(keyIdentifier);
        store.checkUsable(vault, name, version, 'unwrapKey');
        return undefined;
      } catch (error) {
        const refusal = asKeyUseError(error);
        if (refusal instanceof KeyUseError) return refusal;
        throw refusal;
      }
    },
  };
}

export async function startKeyVaultEmulator(options: KeyVaultEmulatorOptions): Promise<RunningKeyVaultEmulator> {
  const { clock } = options;
  const store = new KeyVaultStore({
    clock,
    ...(options.events ? { events: options.events } : {}),
    ...(options.stateFile ? { stateFile: options.stateFile } : {}),
    ...(options.vaults ? { vaults: options.vaults } : {}),
    subscriptionId: options.subscriptionId ?? DEFAULT_SUBSCRIPTION_ID,
    resourceGroup: options.resourceGroup ?? DEFAULT_RESOURCE_GROUP,
    expiryEventsFor: options.expiryEventsFor ?? 'current',
    enforceValidityOnUnwrap: options.enforceValidityOnUnwrap ?? false,
  });

  const report = (error: unknown): void => console.error('Key Vault emulator: expiry check failed:', error);
  const checkExpiry = (): Promise<void> => store.checkExpiry();
  const admin: KeyVaultAdmin & AdminApi = {
    advanceClock: async (seconds) => {
      const now = clock.advance(seconds * 1000);
      await checkExpiry();
      return now;
    },
    now: () => clock.now(),
    events: () => store.events(),
    checkExpiry,
    reset: () => store.reset(),
    vaultUrl,
  };

  const server = https.createServer(
    { cert: options.tls.cert, key: options.tls.key },
    createKeyVaultHandler({
      store,
      admin,
      tenantId: options.tenantId ?? DEFAULT_TENANT_ID,
      pageSize: options.pageSize ?? 25,
    }),
  );
  const port = await listenOnLoopback(server, options.port ?? 0);

  const unsubscribe = clock.onAdvance(() => void checkExpiry().catch(report));
  const intervalMs = options.expiryCheckIntervalMs ?? 1000;
  const timer = intervalMs > 0 ? setInterval(() => void checkExpiry().catch(report), intervalMs) : undefined;
  timer?.unref();
  // Whatever fell due while the emulator was down (a restart with a state file) fires right away.
  void checkExpiry().catch(report);

  return {
    port,
    crypto: inProcessCrypto(store, options.cryptoAlgorithm ?? 'RSA-OAEP-256'),
    admin,
    close: async () => {
      unsubscribe();
      if (timer) clearInterval(timer);
      await store.idle();
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
