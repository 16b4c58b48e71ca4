// Key Vault through @azure/keyvault-keys: one KeyClient per vault, the SDK's own challenge auth and retries.
import type { TokenCredential } from '@azure/core-auth';
import { KeyClient } from '@azure/keyvault-keys';
import type { KeyProperties, KeyVaultKey } from '@azure/keyvault-keys';
import { KeyNotFoundError } from '../domain/errors';
import { keyUrl } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type {
  KeyVault,
  KeyVersionDetails,
  KeyVersionSummary,
  NewKeyVersionSpec,
  RotationPolicy,
} from '../domain/ports';
import { guard } from './azureErrors';
import { keepAliveThroughProxy } from './proxyTunnel';

export class KeyVaultAdapter implements KeyVault {
  private readonly clients = new Map<string, KeyClient>();

  constructor(private readonly credential: TokenCredential) {}

  async listVersions(key: KeyName): Promise<KeyVersionSummary[]> {
    return guard(`key ${keyUrl(key)}`, async () => {
      const versions: KeyVersionSummary[] = [];
      for await (const properties of this.client(key).listPropertiesOfKeyVersions(key.name)) {
        versions.push(summary(key, properties));
      }
      if (versions.length === 0) throw new KeyNotFoundError(`key ${keyUrl(key)}`);
      // Creation times have whole-second resolution: the vault's own notion of "current" breaks ties.
      const current = (await this.client(key).getKey(key.name)).properties.version;
      return versions.map((v) => (v.version === current ? { ...v, latest: true } : v));
    });
  }

  async getVersion(key: KeyName, version?: string): Promise<KeyVersionDetails> {
    const what = `key ${keyUrl(key)}${version ? `/${version}` : ''}`;
    return guard(what, async () => details(key, await this.client(key).getKey(key.name, version ? { version } : {})));
  }

  async getRotationPolicy(key: KeyName): Promise<RotationPolicy | undefined> {
    try {
      const policy = await guard(`key ${keyUrl(key)}`, () => this.client(key).getKeyRotationPolicy(key.name));
      const notify = policy.lifetimeActions?.find((a) => a.action.toLowerCase() === 'notify')?.timeBeforeExpiry;
      return {
        ...(policy.expiresIn ? { expiresIn: policy.expiresIn } : {}),
        ...(notify ? { notifyBeforeExpiry: notify } : {}),
        ...(policy.createdOn ? { createdOn: policy.createdOn } : {}),
      };
    } catch (error) {
      // A key without a rotation policy: the configured default validity applies.
      if (error instanceof KeyNotFoundError) return undefined;
      throw error;
    }
  }

  async createVersion(key: KeyName, spec: NewKeyVersionSpec): Promise<KeyVersionDetails> {
    return guard(`key ${keyUrl(key)}`, async () =>
      details(
        key,
        await this.client(key).createRsaKey(key.name, {
          hsm: spec.keyType === 'RSA-HSM',
          keySize: spec.keySize,
          keyOps: spec.keyOps,
          expiresOn: spec.expiresOn,
          enabled: true,
          tags: spec.tags,
        }),
      ),
    );
  }

  async setEnabled(key: KeyName, version: string, enabled: boolean): Promise<void> {
    // PATCH /keys/{name}/{version} with only `attributes.enabled`: Key Vault keeps every other attribute.
    await guard(`key ${keyUrl(key)}/${version}`, () =>
      this.client(key).updateKeyProperties(key.name, version, { enabled }),
    );
  }

  async listKeys(vaultUrl: string): Promise<KeyName[]> {
    return guard(`vault ${vaultUrl}`, async () => {
      const keys: KeyName[] = [];
      for await (const properties of this.client({ vaultUrl }).listPropertiesOfKeys()) {
        // Managed keys (certificates' keys) cannot be rotated as keys; they are the certificate's business.
        if (!properties.managed) keys.push({ vaultUrl, name: properties.name });
      }
      return keys;
    });
  }

  private client({ vaultUrl }: Pick<KeyName, 'vaultUrl'>): KeyClient {
    let client = this.clients.get(vaultUrl);
    if (!client) {
      client = new KeyClient(vaultUrl, this.credential, { additionalPolicies: keepAliveThroughProxy() });
      this.clients.set(vaultUrl, client);
    }
    return client;
  }
}

function summary(key: KeyName, p: KeyProperties): KeyVersionSummary {
  const version = p.version ?? '';
  return {
    vaultUrl: key.vaultUrl,
    name: key.name,
    version,
    id: `${keyUrl(key)}/${version}`,
    enabled: p.enabled ?? false,
    createdOn: p.createdOn ?? new Date(0),
    ...(p.notBefore ? { notBefore: p.notBefore } : {}),
    ...(p.expiresOn ? { expiresOn: p.expiresOn } : {}),
    ...(p.tags ? { tags: { ...p.tags } } : {}),
  };
}

function details(key: KeyName, k: KeyVaultKey): KeyVersionDetails {
  const modulus = k.key?.n;
  return {
    ...summary(key, k.properties),
    keyType: k.keyType ?? k.key?.kty ?? 'unknown',
    ...(modulus ? { keySize: modulusBits(modulus) } : {}),
    keyOps: [...(k.keyOperations ?? k.key?.keyOps ?? [])],
    tags: { ...(k.properties.tags ?? {}) },
  };
}

/** RSA size from the JWK modulus (leading zero bytes do not count). */
function modulusBits(n: Uint8Array): number {
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  return (n.length - i) * 8;
}
