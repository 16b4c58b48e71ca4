// One place that turns Azure SDK failures into the service's typed errors. By the time an error gets here the
// SDK pipeline has already retried what it retries (429 with Retry-After, 408, 5xx, network errors).
import { isRestError } from '@azure/core-rest-pipeline';
import { KeyNotFoundError, RotatorError, UpstreamRejectedError, UpstreamUnavailableError } from '../domain/errors';

/** `what` names the resource in words (`key https://…/keys/cmk`, `hub /subscriptions/…`): never a secret. */
export function toRotatorError(error: unknown, what: string): RotatorError {
  if (error instanceof RotatorError) return error;
  // A failed table transaction is not a RestError but carries the status of the action that failed it.
  if (isRestError(error) || hasStatus(error)) {
    const status = error.statusCode;
    const detail = `${error.code ?? 'no error code'}${status ? `, HTTP ${status}` : ''}`;
    if (status === 404 && what.startsWith('key ')) return new KeyNotFoundError(what.slice(4));
    if (status === 401 || status === 403) {
      return new UpstreamRejectedError('ACCESS_DENIED', `Access to ${what} was denied (${detail}).`, error);
    }
    if (status === undefined || status === 408 || status === 429 || status >= 500) {
      return new UpstreamUnavailableError(`${what} is unavailable (${detail}).`, error);
    }
    return new UpstreamRejectedError('UPSTREAM_REJECTED', `Azure rejected the request for ${what} (${detail}).`, error);
  }
  if (error instanceof Error && error.name === 'AuthenticationError') {
    return new UpstreamRejectedError('ACCESS_DENIED', `No token could be obtained for ${what}.`, error);
  }
  // DefaultAzureCredential reports "no credential in the chain could get a token" as an AggregateAuthenticationError.
  if (error instanceof Error && ['CredentialUnavailableError', 'AggregateAuthenticationError'].includes(error.name)) {
    return new UpstreamRejectedError('ACCESS_DENIED', `No credential is available to reach ${what}.`, error);
  }
  return new UpstreamUnavailableError(`${what} could not be reached.`, error);
}

function hasStatus(error: unknown): error is Error & { statusCode: number; code?: string } {
  return error instanceof Error && typeof (error as { statusCode?: unknown }).statusCode === 'number';
}

export async function guard<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw toRotatorError(error, what);
  }
}
