// Request hygiene for the local host. It listens on loopback only, but a browser on the same machine can still be
// made to send it requests (a cross-site form post, a DNS-rebound page), and a malformed request must be answered
// as the client's fault (4xx), never as a host failure (500). The Functions host in Azure sits behind App Service's
// front ends, which refuse much of this before it arrives; locally the host itself has to.
import type { IncomingMessage } from 'node:http';
import type { WebhookReply } from './eventGrid';

/** A request refused before it reaches a function; the server answers with `reply`. */
export class RequestRefused extends Error {
  constructor(readonly reply: WebhookReply) {
    super(`request refused with ${reply.status}`);
    this.name = 'RequestRefused';
  }
}

/** Azure's documented limit for an HTTP-triggered function's request (100 MB). */
export const defaultMaxRequestBodyBytes = 104_857_600;
/** Newtonsoft.Json's default MaxDepth since 13.0, which the Functions host parses with. */
export const maxJsonDepth = 64;
/** Azure's generated keys are well under this; a longer one is refused before it is compared. */
export const maxFunctionKeyLength = 256;

export function jsonError(status: number, code: string, message: string): WebhookReply {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: JSON.stringify({ error: { code, message } }),
  };
}

const badRequest = (message: string): RequestRefused => new RequestRefused(jsonError(400, 'BAD_REQUEST', message));

/**
 * The request's URL, from a `Host` that names this machine's loopback interface and an origin-form target
 * (`/path?query`) whose percent-encoding is valid. A Host naming any other machine means a DNS-rebound page (or a
 * misdirected client): the server listens on 127.0.0.1 only, so a legitimate client always names a loopback host.
 */
export function requestUrl(req: IncomingMessage): URL {
  const host = req.headers.host ?? '127.0.0.1';
  const hostMatch = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(host);
  if (!hostMatch) throw badRequest('The Host header is not a valid host[:port].');
  const hostname = (hostMatch[1] ?? hostMatch[2] ?? '').toLowerCase();
  if (!isLoopbackName(hostname)) {
    throw badRequest(
      'The Host header must name this machine (127.0.0.1, localhost or [::1]): the host listens there only.',
    );
  }
  const target = req.url ?? '/';
  // `//other/path` would otherwise parse as a URL on another host, and `http://other/...` (absolute form) names one.
  if (!target.startsWith('/') || target.startsWith('//')) throw badRequest('The request target must be a path.');
  const queryAt = target.indexOf('?');
  for (const part of queryAt === -1 ? [target] : [target.slice(0, queryAt), target.slice(queryAt + 1)]) {
    try {
      decodeURIComponent(part);
    } catch {
      throw badRequest('The URL has invalid percent-encoding.');
    }
  }
  try {
    return new URL(`http://${host}${target}`);
  } catch {
    throw badRequest('The URL is not valid.');
  }
}

function isLoopbackName(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '::1' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Operator routes (function- and admin-level) refuse a browser's cross-site request: an `Origin` other than this
 * host's own is refused (403) whatever the method, since a page on another site has no business calling them.
 * Clients that are not browsers (curl, SDKs, the tests) send no Origin and are unaffected.
 */
export function assertSameOrigin(req: IncomingMessage, port: number): void {
  const origin = req.headers.origin;
  if (origin === undefined) return;
  const own = [`http://127.0.0.1:${port}`, `http://localhost:${port}`, `http://[::1]:${port}`];
  if (!own.includes(origin.toLowerCase())) {
    throw new RequestRefused(
      jsonError(403, 'CROSS_ORIGIN_REFUSED', 'Requests from another origin are refused on operator routes.'),
    );
  }
}

/**
 * A body on an operator route must be declared JSON. An HTML form can post only urlencoded, multipart or plain
 * text bodies without a CORS preflight, so demanding JSON is what keeps a cross-site form from driving them.
 */
export function assertJsonBody(req: IncomingMessage): void {
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (!hasBody) return;
  const mediaType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (mediaType === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mediaType)) return;
  throw new RequestRefused(
    jsonError(
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      `Operator requests with a body must send Content-Type: application/json (got ${
        mediaType === '' ? 'none' : JSON.stringify(mediaType.slice(0, 100))
      }).`,
    ),
  );
}

function payloadTooLarge(maxBytes: number): RequestRefused {
  return new RequestRefused(
    jsonError(413, 'PAYLOAD_TOO_LARGE', `The request body is larger than the host accepts (${maxBytes} bytes).`),
  );
}

/** Refuses up front a request whose declared length is over the limit, before anything reads it. */
export function assertDeclaredLength(req: IncomingMessage, maxBytes: number): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) throw payloadTooLarge(maxBytes);
}

/**
 * The whole body, or a 413 as soon as more than `maxBytes` arrived (chunked bodies declare no length). The rest of
 * an oversized body is read and dropped rather than the stream destroyed, which would take the socket, and with
 * it the 413, down too.
 */
export function readBodyCapped(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  assertDeclaredLength(req, maxBytes);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      received += chunk.length;
      if (received <= maxBytes) return void chunks.push(chunk);
      refused = true;
      chunks.length = 0;
      reject(payloadTooLarge(maxBytes));
    });
    req.on('end', () => {
      if (!refused) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

/**
 * JSON.parse, refusing documents nested deeper than the host's parser accepts. V8 parses any depth, but what the
 * host then does with the value (serialising it for the function) recurses, and a deep enough document would
 * overflow the stack there and surface as a 500.
 */
export function parseJsonBounded(text: string, maxDepth = maxJsonDepth): unknown {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c)
        i++; // backslash: skip the escaped character
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) {
      inString = true;
    } else if (char === 0x5b || char === 0x7b) {
      if (++depth > maxDepth) throw new SyntaxError(`it is nested deeper than ${maxDepth} levels`);
    } else if (char === 0x5d || char === 0x7d) {
      depth--;
    }
  }
  return JSON.parse(text) as unknown;
}
