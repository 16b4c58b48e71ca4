// What the emulators need from each other, kept as small interfaces so each can be tested alone.

/** A Key Vault event as Key Vault's system topic publishes it (EventGridEvent schema, PascalCase data). */
export interface KeyVaultEventGridEvent {
  id: string;
  topic: string;
  subject: string;
  eventType: string;
  eventTime: string;
  data: Record<string, unknown>;
  dataVersion: string;
  metadataVersion: string;
}

/** Where the Key Vault emulator sends its notifications (the Event Grid emulator's system topic). */
export interface EventSink {
  publish(events: KeyVaultEventGridEvent[]): void;
}

/** Why a key version cannot be used to wrap/unwrap: the same reasons Azure gives a hub. */
export class KeyUseError extends Error {
  constructor(
    readonly code:
      'KeyNotFound' | 'KeyDisabled' | 'KeyExpired' | 'KeyNotYetValid' | 'OperationNotAllowed' | 'BadParameter',
    message: string,
  ) {
    super(message);
    this.name = 'KeyUseError';
  }
}

/** The part of Key Vault an emulated IoT hub uses to protect its data-encryption key. */
export interface KeyVaultCrypto {
  /** `keyIdentifier` is a full versioned key URL; rejects with KeyUseError. */
  wrapKey(keyIdentifier: string, plaintext: Buffer): Promise<Buffer>;
  unwrapKey(keyIdentifier: string, wrapped: Buffer): Promise<Buffer>;
  /**
   * Why `keyIdentifier` cannot unwrap right now (missing, disabled, unwrap not permitted), answered from the version's
   * attributes without a cryptographic operation; undefined when it can.
   */
  unwrapRefusal(keyIdentifier: string): KeyUseError | undefined;
}
