// The errors the service reasons about. `transient` decides the whole retry story: a transient failure is
// rethrown (HTTP 503, Event Grid redelivers); a permanent one is recorded and reported, never retried.

export type ErrorCode =
  | 'INVALID_INPUT'
  | 'VAULT_NOT_ALLOWED'
  | 'KEY_NOT_FOUND'
  | 'KEY_UNUSABLE'
  | 'ACCESS_DENIED'
  | 'UPSTREAM_REJECTED'
  | 'HUB_UPDATE_FAILED'
  | 'HUB_KEY_NOT_APPLIED'
  | 'ETAG_CONFLICT'
  | 'UPSTREAM_UNAVAILABLE'
  | 'THROTTLED'
  | 'JOB_NOT_FOUND'
  | 'CONFIG_INVALID'
  | 'BUSY'
  | 'NOT_REVOKED';

export interface FieldProblem {
  field: string;
  message: string;
}

export class RotatorError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad input: which fields, and what was wrong with each. */
export class ValidationError extends RotatorError {
  constructor(readonly problems: FieldProblem[]) {
    super('INVALID_INPUT', problems.map((p) => `${p.field}: ${p.message}`).join('; '), false);
  }
}

export class VaultNotAllowedError extends RotatorError {
  constructor(vaultUrl: string) {
    super('VAULT_NOT_ALLOWED', `Vault ${vaultUrl} is not in ROTATOR_ALLOWED_VAULTS.`, false);
  }
}

export class KeyNotFoundError extends RotatorError {
  constructor(what: string) {
    super('KEY_NOT_FOUND', `${what} was not found in Key Vault.`, false);
  }
}

export class JobNotFoundError extends RotatorError {
  constructor(jobId: string) {
    super('JOB_NOT_FOUND', `No job ${jobId} was ever opened.`, false);
  }
}

/** The target key version fails a safety rule: moving a hub to it could break the hub. */
export class KeyUnusableError extends RotatorError {
  constructor(
    keyId: string,
    readonly reasons: string[],
  ) {
    super('KEY_UNUSABLE', `Key version ${keyId} cannot protect a hub: ${reasons.join('; ')}.`, false);
  }
}

/** A restore was asked for a key whose last revocation was restored already, or that was never revoked. */
export class NotRevokedError extends RotatorError {
  constructor(keyId: string, restoredAt?: Date) {
    super(
      'NOT_REVOKED',
      restoredAt
        ? `Key ${keyId} has nothing to restore: its last revocation was restored at ${restoredAt.toISOString()}.`
        : `Key ${keyId} has nothing to restore: it was never revoked.`,
      false,
    );
  }
}

/** A dependency refused for good (401/403/400/404 from Azure): retrying the same request will not help. */
export class UpstreamRejectedError extends RotatorError {
  constructor(code: 'ACCESS_DENIED' | 'UPSTREAM_REJECTED' | 'HUB_UPDATE_FAILED', message: string, cause?: unknown) {
    super(code, message, false, { cause });
  }
}

/** Throttling, 5xx, network trouble that outlasted the SDK pipeline's own retries. */
export class UpstreamUnavailableError extends RotatorError {
  constructor(message: string, cause?: unknown) {
    super('UPSTREAM_UNAVAILABLE', message, true, { cause });
  }
}

/** Azure asked us to slow down (429, or 503 with Retry-After), or our own share of ARM's budget is spent for now. */
export class ThrottledError extends RotatorError {
  constructor(
    message: string,
    /** How long Azure asked us to wait, when it said. */
    readonly retryAfterMs?: number,
    cause?: unknown,
  ) {
    super('THROTTLED', message, true, { cause });
  }
}

/** ARM answered 412: someone else wrote the hub between our read and our write. */
export class EtagConflictError extends RotatorError {
  constructor(hubId: string) {
    super('ETAG_CONFLICT', `Hub ${hubId} changed while it was being updated (412 Precondition Failed).`, true);
  }
}

export class HubKeyNotAppliedError extends RotatorError {
  constructor(hubId: string, expected: string, actual: string | undefined) {
    super(
      'HUB_KEY_NOT_APPLIED',
      `Hub ${hubId} reported success but references ${actual ?? 'no key'} instead of ${expected}.`,
      false,
    );
  }
}

/** Another invocation holds the key's lease: try again later (Event Grid redelivers). */
export class BusyError extends RotatorError {
  constructor(what: string) {
    super('BUSY', `${what} is being processed by another invocation.`, true);
  }
}

export function isTransient(error: unknown): boolean {
  return error instanceof RotatorError ? error.transient : true;
}

export function errorCode(error: unknown): ErrorCode | 'INTERNAL' {
  return error instanceof RotatorError ? error.code : 'INTERNAL';
}

/** Error text for reports and logs: our own messages are written to be safe; anything else is reduced to its type. */
export function safeMessage(error: unknown): string {
  if (error instanceof RotatorError) return error.message;
  return error instanceof Error ? `${error.name}: unexpected failure` : 'unexpected failure';
}
