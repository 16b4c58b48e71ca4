// Bearer tokens for the emulators: unsigned JWTs from the fake managed identity endpoint, checked for
// audience and expiry the way Azure checks them (so a client asking for the wrong scope fails here too).

export interface TokenClaims {
  aud: string;
  iss: string;
  oid: string;
  iat: number;
  exp: number;
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** `resource` as the client asked for it (`https://vault.azure.net`, `https://management.azure.com/`, ...). */
export function issueToken(resource: string, lifetimeSeconds = 3600, principalId = 'local-identity'): string {
  const iat = Math.floor(Date.now() / 1000);
  const claims: TokenClaims = {
    aud: resource,
    iss: 'https://sts.windows.net/emulator/',
    oid: principalId,
    iat,
    exp: iat + lifetimeSeconds,
  };
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`;
}

export type BearerCheck = { ok: true; claims: TokenClaims } | { ok: false; message: string };

const normalizeAudience = (aud: string): string =>
  aud
    .replace(/\/\.default$/, '')
    .replace(/\/+$/, '')
    .toLowerCase();

/** Checks an `Authorization` header value against the audiences the emulated service accepts. */
export function verifyBearer(authorization: string | undefined, audiences: readonly string[]): BearerCheck {
  const match = /^Bearer\s+([^\s]+)$/i.exec(authorization ?? '');
  if (!match?.[1]) return { ok: false, message: 'Missing bearer token.' };
  const payload = match[1].split('.')[1];
  let claims: TokenClaims;
  try {
    claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as TokenClaims;
  } catch {
    return { ok: false, message: 'Malformed bearer token.' };
  }
  if (typeof claims.aud !== 'string' || !audiences.map(normalizeAudience).includes(normalizeAudience(claims.aud))) {
    return { ok: false, message: `Token audience is not one of: ${audiences.join(', ')}.` };
  }
  if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) return { ok: false, message: 'Token expired.' };
  return { ok: true, claims };
}
