// HTTP plumbing of the ARM emulator: bodies, JSON, bearer authentication, as ARM's front door does them.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { TokenClaims } from '../auth';
import { verifyBearer } from '../auth';
import { ArmError } from './errors';

/** ARM accepts tokens for either of its resource URIs. */
const ARM_AUDIENCES = ['https://management.azure.com', 'https://management.core.windows.net'];
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

export const headerValue = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
};

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () =>
      size > MAX_BODY_BYTES
        ? reject(new ArmError(413, 'RequestEntityTooLarge', `The request body exceeds ${MAX_BODY_BYTES} bytes.`))
        : resolve(Buffer.concat(chunks)),
    );
    req.on('error', reject);
  });
}

export function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch (error) {
    throw new ArmError(
      400,
      'InvalidRequestContent',
      `The request content was invalid and could not be deserialized: ${(error as Error).message}`,
    );
  }
}

/** ARM's 401: error body plus a Bearer challenge (no `claims`, so SDK clients do not attempt a CAE retry). */
export function authenticate(authorization: string | undefined): TokenClaims {
  const challenge = (description: string): Record<string, string> => ({
    'www-authenticate':
      `Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", ` +
      `error_description="${description}"`,
  });
  if (!authorization) {
    throw new ArmError(
      401,
      'AuthenticationFailed',
      "Authentication failed. The 'Authorization' header is missing.",
      challenge("The authentication failed because of missing 'Authorization' header."),
    );
  }
  const check = verifyBearer(authorization, ARM_AUDIENCES);
  if (check.ok) return check.claims;
  const code = check.message.startsWith('Token audience')
    ? 'InvalidAuthenticationTokenAudience'
    : check.message.startsWith('Token expired')
      ? 'ExpiredAuthenticationToken'
      : 'InvalidAuthenticationToken';
  throw new ArmError(401, code, `The access token is not valid: ${check.message}`, challenge(check.message));
}
