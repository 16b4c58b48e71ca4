// Event Grid topic credentials: the access key (aeg-sas-key) and shared access signatures (aeg-sas-token) in the
// form @azure/eventgrid's generateSharedAccessSignature makes them: `r=<resource>&e=<expiry>&s=<signature>`, where
// the signature is HMAC-SHA256 over `r=...&e=...` keyed with the base64-decoded topic key.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export type CredentialCheck = { ok: true } | { ok: false; message: string };

/** Constant-time comparison of two secrets of any length. */
export function equalSecrets(given: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** `M/d/yyyy h:mm:ss AM|PM` in UTC (.NET's en-US format, which the service expects). */
function parseServiceTime(text: string): number | undefined {
  const match = /^(\d{1,2})\/(\d{1,2})\/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM)$/.exec(text);
  if (!match) return undefined;
  const [, month, day, year, hour, minute, second, half] = match.map(String);
  const hour24 = (Number(hour) % 12) + (half === 'PM' ? 12 : 0);
  const time = Date.UTC(Number(year), Number(month) - 1, Number(day), hour24, Number(minute), Number(second));
  return Number.isNaN(time) ? undefined : time;
}

/** Checks an aeg-sas-token against the topic's key and the host it was sent to. */
export function verifySasToken(token: string, topicKey: string | undefined, host: string): CredentialCheck {
  const fail = (message: string): CredentialCheck => ({ ok: false, message });
  const signatureAt = token.lastIndexOf('&s=');
  const params = new URLSearchParams(token);
  const resource = params.get('r');
  const expiry = params.get('e');
  const signature = params.get('s');
  if (signatureAt < 0 || !resource || !expiry || !signature) {
    return fail('The aeg-sas-token is malformed: expected r=<resource>&e=<expiry>&s=<signature>.');
  }
  if (topicKey === undefined) return fail(`The topic at ${host} has no access key, so it accepts no SAS tokens.`);
  let resourceHost: string;
  try {
    resourceHost = new URL(resource).host.toLowerCase();
  } catch {
    return fail('The aeg-sas-token resource (r) is not an absolute URL.');
  }
  if (resourceHost !== host.toLowerCase()) {
    return fail(`The aeg-sas-token was issued for ${resourceHost}, not for ${host}.`);
  }
  const expiresAt = parseServiceTime(expiry);
  if (expiresAt === undefined) return fail('The aeg-sas-token expiry (e) must read "M/d/yyyy h:mm:ss AM|PM" (UTC).');
  if (expiresAt <= Date.now()) return fail(`The aeg-sas-token expired at ${new Date(expiresAt).toISOString()}.`);
  const expected = createHmac('sha256', Buffer.from(topicKey, 'base64'))
    .update(token.slice(0, signatureAt))
    .digest('base64');
  return equalSecrets(signature, expected)
    ? { ok: true }
    : fail('The aeg-sas-token signature does not match the topic key.');
}
