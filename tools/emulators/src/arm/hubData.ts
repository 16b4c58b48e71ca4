// What an IoT hub keeps encrypted: a sample of its data under a random data-encryption key (DEK). With a customer-managed
// key the DEK is stored only wrapped by one Key Vault key version, so losing that version means losing the data.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KeyVaultCrypto } from '../contracts';
import { KeyUseError } from '../contracts';

export interface ProtectedHubData {
  /** The versioned key that wraps the DEK; undefined while the hub uses a service-managed key. */
  keyIdentifier: string | undefined;
  /** The wrapped DEK (or the DEK itself when service-managed). */
  protectedKey: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
  authTag: Buffer;
}

export interface HubDataCheck {
  readable: boolean;
  keyIdentifier: string | null;
  error?: { code: string; message: string };
}

const sameKey = (a: string | undefined, b: string | undefined): boolean => a?.toLowerCase() === b?.toLowerCase();

export class HubDataVault {
  constructor(private readonly crypto: KeyVaultCrypto) {}

  async create(hubId: string, keyIdentifier: string | undefined): Promise<ProtectedHubData> {
    const dek = randomBytes(32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', dek, iv);
    const sample = JSON.stringify({ hub: hubId, devices: ['device-1', 'device-2'], createdAt: Date.now() });
    const ciphertext = Buffer.concat([cipher.update(sample, 'utf8'), cipher.final()]);
    return {
      keyIdentifier,
      protectedKey: keyIdentifier ? await this.crypto.wrapKey(keyIdentifier, dek) : dek,
      iv,
      ciphertext,
      authTag: cipher.getAuthTag(),
    };
  }

  /** Moves the DEK under `keyIdentifier`: unwrap with the current version, wrap with the new one. Rejects with KeyUseError. */
  async rekey(data: ProtectedHubData, keyIdentifier: string | undefined): Promise<ProtectedHubData> {
    if (sameKey(data.keyIdentifier, keyIdentifier)) return data;
    const dek = await this.dataKey(data);
    return {
      ...data,
      keyIdentifier,
      protectedKey: keyIdentifier ? await this.crypto.wrapKey(keyIdentifier, dek) : dek,
    };
  }

  /** Can the hub still read its data: the DEK unwraps with the stored key version and decrypts the sample. */
  async check(data: ProtectedHubData | undefined): Promise<HubDataCheck> {
    if (!data) {
      return {
        readable: false,
        keyIdentifier: null,
        error: { code: 'NoData', message: 'The hub was never provisioned, so it holds no data.' },
      };
    }
    const keyIdentifier = data.keyIdentifier ?? null;
    let dek: Buffer;
    try {
      dek = await this.dataKey(data);
    } catch (error) {
      return { readable: false, keyIdentifier, error: describeKeyFailure(error) };
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', dek, data.iv);
      decipher.setAuthTag(data.authTag);
      Buffer.concat([decipher.update(data.ciphertext), decipher.final()]);
      return { readable: true, keyIdentifier };
    } catch {
      return {
        readable: false,
        keyIdentifier,
        error: { code: 'DataKeyMismatch', message: 'The unwrapped data key does not decrypt the hub data.' },
      };
    }
  }

  private async dataKey(data: ProtectedHubData): Promise<Buffer> {
    return data.keyIdentifier ? this.crypto.unwrapKey(data.keyIdentifier, data.protectedKey) : data.protectedKey;
  }
}

/** KeyUseError keeps Key Vault's reason (KeyDisabled, KeyExpired, ...); anything else means Key Vault was not reached. */
export function describeKeyFailure(error: unknown): { code: string; message: string } {
  if (error instanceof KeyUseError) return { code: error.code, message: error.message };
  return {
    code: 'KeyVaultUnreachable',
    message: `Key Vault could not be reached: ${error instanceof Error ? error.message : String(error)}`,
  };
}
