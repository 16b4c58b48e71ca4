// Key Vault's keys REST API (data plane) over the store, as @azure/keyvault-keys 4.10 speaks it (api-version
// 2025-07-01; the 7.x versions are answered the same way), plus the emulator's own /_admin endpoints.
//
// Request flow, as Key Vault does it: api-version check, then the bearer challenge (a request without a token gets
// 401 + WWW-Authenticate naming the tenant and resource; @azure/keyvault-common's challenge policy sends its first
// request *without* a body and repeats it with a token), then the operation.
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { verifyBearer } from '../auth';
import type { KeyVaultEventGridEvent } from '../contracts';
import {
  DEFAULT_NOTIFY_BEFORE_EXPIRY,
  KeyVaultError,
  RECOVERABLE_DAYS,
  RECOVERY_LEVEL,
  keyNotFound,
  vaultNameFromHost,
  vaultUrl,
} from './store';
import type { CryptoOperation, KeyVaultStore, StoredKey, StoredKeyVersion } from './store';

export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_PAGE_SIZE = 25;
const CRYPTO_PATHS: Record<string, CryptoOperation> = {
  encrypt: 'encrypt',
  decrypt: 'decrypt',
  wrapkey: 'wrapKey',
  unwrapkey: 'unwrapKey',
};

export interface AdminApi {
  advanceClock(seconds: number): Promise<Date>;
  now(): Date;
  events(): KeyVaultEventGridEvent[];
  reset(): void;
  checkExpiry(): Promise<void>;
}

export interface KeyVaultHttpOptions {
  store: KeyVaultStore;
  admin: AdminApi;
  tenantId: string;
  /** Page size when a list request names no maxresults (Key Vault's is 25). */
  pageSize: number;
}

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

const ok = (body: unknown): Reply => ({ status: 200, body });
const errorReply = (status: number, code: string, message: string, innerCode?: string): Reply => ({
  status,
  body: { error: { code, message, ...(innerCode ? { innererror: { code: innerCode } } : {}) } },
});
const badParameter = (message: string): KeyVaultError => new KeyVaultError(400, 'BadParameter', message);

export function isSupportedApiVersion(v: string): boolean {
  return /^7\.\d+(-preview(\.\d+)?)?$/.test(v) || /^20\d\d-\d\d-\d\d(-preview)?$/.test(v);
}

function isLoopback(address: string | undefined): boolean {
  return !!address && (address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.'));
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > MAX_BODY_BYTES) throw badParameter('The request body is too large.');
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

function parseJson(raw: Buffer): Record<string, unknown> | undefined {
  if (raw.length === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw badParameter('The request body is not valid JSON.');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw badParameter('The request body must be a JSON object.');
  return parsed as Record<string, unknown>;
}

function decodeBase64Url(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(value))
    throw badParameter(`Property ${what} must be base64url.`);
  return Buffer.from(value, 'base64url');
}

// ---- response shapes (keys.json / the SDK's deserializers) -----------------------------------------------------------

function attributes(v: StoredKeyVersion): Record<string, unknown> {
  return {
    enabled: v.enabled,
    ...(v.nbf !== undefined ? { nbf: v.nbf } : {}),
    ...(v.exp !== undefined ? { exp: v.exp } : {}),
    created: v.created,
    updated: v.updated,
    recoveryLevel: RECOVERY_LEVEL,
    recoverableDays: RECOVERABLE_DAYS,
    exportable: v.exportable,
  };
}

function keyBundle(store: KeyVaultStore, vault: string, key: StoredKey, v: StoredKeyVersion): Record<string, unknown> {
  return {
    key: { kid: store.keyId(vault, key, v), kty: v.kty, key_ops: v.keyOps, ...store.publicJwk(v) },
    attributes: attributes(v),
    ...(v.tags ? { tags: v.tags } : {}),
  };
}

function latest(key: StoredKey): StoredKeyVersion {
  return key.versions[key.versions.length - 1]!;
}

function deletedKeyBundle(store: KeyVaultStore, vault: string, key: StoredKey): Record<string, unknown> {
  return {
    ...keyBundle(store, vault, key, latest(key)),
    recoveryId: `${vaultUrl(vault)}/deletedkeys/${key.name}`,
    deletedDate: key.deleted?.deletedDate,
    scheduledPurgeDate: key.deleted?.scheduledPurgeDate,
  };
}

function policyBody(vault: string, key: StoredKey): Record<string, unknown> {
  const id = `${vaultUrl(vault)}/keys/${key.name}/rotationpolicy`;
  const p = key.policy;
  if (!p) {
    return {
      id,
      lifetimeActions: [{ trigger: { timeBeforeExpiry: DEFAULT_NOTIFY_BEFORE_EXPIRY }, action: { type: 'Notify' } }],
      attributes: {},
    };
  }
  return {
    id,
    lifetimeActions: p.lifetimeActions,
    attributes: { ...(p.expiryTime ? { expiryTime: p.expiryTime } : {}), created: p.created, updated: p.updated },
  };
}

/** One page of `items`, with a nextLink carrying the offset in $skiptoken as Key Vault's do. */
function page<T>(items: T[], url: URL, vault: string, defaultSize: number): { value: T[]; nextLink: string | null } {
  const maxText = url.searchParams.get('maxresults');
  let size = defaultSize;
  if (maxText !== null) {
    size = Number(maxText);
    if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
      throw badParameter(`maxresults must be an integer from 1 to ${MAX_PAGE_SIZE}.`);
    }
  }
  const token = url.searchParams.get('$skiptoken');
  let offset = 0;
  if (token) {
    try {
      offset = (JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { o: number }).o;
    } catch {
      throw badParameter('The $skiptoken is not valid.');
    }
    if (!Number.isInteger(offset) || offset < 0) throw badParameter('The $skiptoken is not valid.');
  }
  const value = items.slice(offset, offset + size);
  let nextLink: string | null = null;
  if (offset + size < items.length) {
    // Shaped like Key Vault's: ?api-version=...&$skiptoken=...[&maxresults=...] (the token is base64url: no escaping).
    const apiVersion = encodeURIComponent(url.searchParams.get('api-version') ?? '');
    const skipToken = Buffer.from(JSON.stringify({ o: offset + size })).toString('base64url');
    nextLink =
      `${vaultUrl(vault)}${url.pathname}?api-version=${apiVersion}&$skiptoken=${skipToken}` +
      (maxText !== null ? `&maxresults=${size}` : '');
  }
  return { value, nextLink };
}

// ---- the Key Vault routes --------------------------------------------------------------------------------------------

function epochAttribute(attrs: Record<string, unknown> | undefined, name: 'nbf' | 'exp'): number | null | undefined {
  if (!attrs || !(name in attrs)) return undefined;
  return attrs[name] as number | null;
}

async function keyVaultRoute(
  opts: KeyVaultHttpOptions,
  vault: string,
  method: string,
  url: URL,
  body: Record<string, unknown> | undefined,
): Promise<Reply> {
  const { store } = opts;
  const segs = url.pathname
    .split('/')
    .slice(1)
    .map((s) => decodeURIComponent(s));
  const [collection, name, third, fourth] = segs;
  const methodNotAllowed = errorReply(405, 'MethodNotAllowed', `${method} is not supported on ${url.pathname}.`);
  const attrs = body?.attributes as Record<string, unknown> | undefined;

  if (collection === 'keys') {
    if (segs.length === 1 || (segs.length === 2 && name === '')) {
      if (method !== 'GET') return methodNotAllowed;
      const items = store.listKeys(vault).map((k) => ({
        kid: store.keyId(vault, k),
        attributes: attributes(latest(k)),
        ...(latest(k).tags ? { tags: latest(k).tags } : {}),
      }));
      return ok(page(items, url, vault, opts.pageSize));
    }
    if (!name) throw keyNotFound('');
    if (
      segs.length === 2 ||
      (segs.length === 3 &&
        !['create', 'rotate', 'rotationpolicy', 'versions', ...Object.keys(CRYPTO_PATHS), 'backup'].includes(third!))
    ) {
      const version = segs.length === 3 ? third : undefined;
      if (method === 'GET') {
        const found = store.keyVersion(vault, name, version);
        return ok(keyBundle(store, vault, found.key, found.version));
      }
      if (method === 'PATCH') {
        const found = store.updateKey(vault, name, version, {
          keyOps: body?.key_ops as string[] | undefined,
          enabled: attrs?.enabled as boolean | undefined,
          nbf: epochAttribute(attrs, 'nbf'),
          exp: epochAttribute(attrs, 'exp'),
          tags: body && 'tags' in body ? (body.tags as Record<string, string>) : undefined,
        });
        return ok(keyBundle(store, vault, found.key, found.version));
      }
      if (method === 'DELETE' && segs.length === 2)
        return ok(deletedKeyBundle(store, vault, store.deleteKey(vault, name)));
      if (method === 'PUT' && segs.length === 2)
        return errorReply(501, 'NotSupported', 'Importing keys is not supported by the emulator.');
      return methodNotAllowed;
    }
    if (segs.length === 3) {
      switch (third) {
        case 'create': {
          if (method !== 'POST') return methodNotAllowed;
          if (!body) throw badParameter('The request body is required.');
          const created = await store.createKey(vault, name, {
            kty: body.kty as string,
            keySize: body.key_size as number | undefined,
            crv: body.crv as string | undefined,
            keyOps: body.key_ops as string[] | undefined,
            enabled: attrs?.enabled as boolean | undefined,
            nbf: epochAttribute(attrs, 'nbf'),
            exp: epochAttribute(attrs, 'exp'),
            exportable: attrs?.exportable as boolean | undefined,
            tags: body.tags as Record<string, string> | undefined,
          });
          return ok(keyBundle(store, vault, created.key, created.version));
        }
        case 'rotate': {
          if (method !== 'POST') return methodNotAllowed;
          const rotated = await store.rotateKey(vault, name);
          return ok(keyBundle(store, vault, rotated.key, rotated.version));
        }
        case 'rotationpolicy': {
          if (method === 'GET') return ok(policyBody(vault, store.rotationPolicy(vault, name).key));
          if (method === 'PUT') return ok(policyBody(vault, store.setRotationPolicy(vault, name, body).key));
          return methodNotAllowed;
        }
        case 'versions': {
          if (method !== 'GET') return methodNotAllowed;
          const key = store.key(vault, name);
          const items = key.versions.map((v) => ({
            kid: store.keyId(vault, key, v),
            attributes: attributes(v),
            ...(v.tags ? { tags: v.tags } : {}),
          }));
          return ok(page(items, url, vault, opts.pageSize));
        }
        case 'backup':
          return errorReply(501, 'NotSupported', 'Key backup is not supported by the emulator.');
        default:
          return cryptoRoute(store, vault, method, name, undefined, third!, body);
      }
    }
    if (segs.length === 4 && fourth! in CRYPTO_PATHS)
      return cryptoRoute(store, vault, method, name, third, fourth!, body);
  }

  if (collection === 'deletedkeys') {
    if (segs.length === 1) {
      if (method !== 'GET') return methodNotAllowed;
      const items = store.listDeletedKeys(vault).map((k) => ({
        kid: store.keyId(vault, k),
        attributes: attributes(latest(k)),
        ...(latest(k).tags ? { tags: latest(k).tags } : {}),
        recoveryId: `${vaultUrl(vault)}/deletedkeys/${k.name}`,
        deletedDate: k.deleted?.deletedDate,
        scheduledPurgeDate: k.deleted?.scheduledPurgeDate,
      }));
      return ok(page(items, url, vault, opts.pageSize));
    }
    if (name && segs.length === 2) {
      if (method === 'GET') return ok(deletedKeyBundle(store, vault, store.deletedKey(vault, name)));
      if (method === 'DELETE') {
        store.purgeDeletedKey(vault, name);
        return { status: 204 };
      }
      return methodNotAllowed;
    }
    if (name && segs.length === 3 && third === 'recover') {
      if (method !== 'POST') return methodNotAllowed;
      const key = store.recoverDeletedKey(vault, name);
      return ok(keyBundle(store, vault, key, latest(key)));
    }
  }

  return errorReply(404, 'NotFound', `The emulator does not serve ${method} ${url.pathname}.`);
}

function cryptoRoute(
  store: KeyVaultStore,
  vault: string,
  method: string,
  name: string,
  version: string | undefined,
  opPath: string,
  body: Record<string, unknown> | undefined,
): Reply {
  const operation = CRYPTO_PATHS[opPath];
  if (!operation) return errorReply(404, 'NotFound', `Unknown key operation ${opPath}.`);
  if (method !== 'POST') return errorReply(405, 'MethodNotAllowed', `${method} is not supported for ${opPath}.`);
  if (!body) throw badParameter('The request body is required.');
  if (typeof body.alg !== 'string') throw badParameter('Property alg is required.');
  const value = decodeBase64Url(body.value, 'value');
  const { kid, result } = store.cryptoOperation(vault, name, version || undefined, operation, body.alg, value);
  return ok({ kid, value: result.toString('base64url') });
}

// ---- admin -----------------------------------------------------------------------------------------------------------

async function adminRoute(
  admin: AdminApi,
  method: string,
  url: URL,
  body: Record<string, unknown> | undefined,
): Promise<Reply> {
  const route = `${method} ${url.pathname.replace(/\/+$/, '')}`;
  switch (route) {
    case 'GET /_admin/clock': {
      const now = admin.now();
      return ok({ now: now.toISOString(), epochSeconds: Math.floor(now.getTime() / 1000) });
    }
    case 'POST /_admin/clock/advance': {
      const seconds = body?.seconds;
      if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) {
        return errorReply(400, 'BadParameter', 'Body must be {"seconds": <non-negative number>}.');
      }
      const now = await admin.advanceClock(seconds);
      return ok({ now: now.toISOString(), epochSeconds: Math.floor(now.getTime() / 1000) });
    }
    case 'GET /_admin/events': {
      const type = url.searchParams.get('eventType');
      const events = admin.events().filter((e) => !type || e.eventType === type);
      return ok({ value: events });
    }
    case 'POST /_admin/expiry-check':
      await admin.checkExpiry();
      return { status: 204 };
    case 'POST /_admin/reset':
      admin.reset();
      return { status: 204 };
    default:
      return errorReply(404, 'NotFound', `No admin endpoint ${route}.`);
  }
}

// ---- the handler ----------------------------------------------------------------------------------------------------

function send(res: http.ServerResponse, reply: Reply): void {
  const headers: Record<string, string | number> = {
    'x-ms-request-id': randomUUID(),
    'x-ms-keyvault-service-version': '1.9.0.0',
    'x-ms-keyvault-region': 'local-emulator',
    ...reply.headers,
  };
  if (reply.body === undefined) {
    res.writeHead(reply.status, headers).end();
    return;
  }
  const text = JSON.stringify(reply.body);
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = Buffer.byteLength(text);
  res.writeHead(reply.status, headers).end(text);
}

export function createKeyVaultHandler(
  opts: KeyVaultHttpOptions,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const challenge = `Bearer authorization="https://login.microsoftonline.com/${opts.tenantId}", resource="${KEY_VAULT_RESOURCE}"`;

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = new URL(req.url ?? '/', 'https://emulator.invalid');
    try {
      const raw = await readBody(req);

      if (url.pathname === '/_admin' || url.pathname.startsWith('/_admin/')) {
        if (!isLoopback(req.socket.remoteAddress))
          return send(res, errorReply(403, 'Forbidden', 'Admin endpoints answer loopback only.'));
        return send(res, await adminRoute(opts.admin, method, url, parseJson(raw)));
      }

      const vault = vaultNameFromHost(req.headers.host);
      if (!vault) {
        return send(
          res,
          errorReply(
            404,
            'NotFound',
            `Host ${req.headers.host ?? '(none)'} is not a vault: use https://<name>.vault.azure.net through the proxy.`,
          ),
        );
      }
      if (!opts.store.hasVault(vault))
        return send(res, errorReply(404, 'VaultNotFound', `No vault named ${vault} is served by this emulator.`));

      const apiVersion = url.searchParams.get('api-version');
      if (!apiVersion) return send(res, errorReply(400, 'BadParameter', 'The api-version query parameter is missing.'));
      if (!isSupportedApiVersion(apiVersion)) {
        return send(
          res,
          errorReply(
            400,
            'BadParameter',
            `The specified version (${apiVersion}) is not recognized. Consider using the latest supported version (2025-07-01).`,
          ),
        );
      }

      const authorization = req.headers.authorization;
      if (!authorization) {
        return send(res, {
          ...errorReply(401, 'Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.'),
          headers: { 'www-authenticate': challenge },
        });
      }
      const check = verifyBearer(authorization, [KEY_VAULT_RESOURCE]);
      if (!check.ok) {
        return send(res, {
          ...errorReply(401, 'Unauthorized', `AKV10022: ${check.message}`),
          headers: { 'www-authenticate': challenge },
        });
      }

      send(res, await keyVaultRoute(opts, vault, method, url, parseJson(raw)));
    } catch (error) {
      if (error instanceof KeyVaultError)
        return send(res, errorReply(error.status, error.code, error.message, error.innerCode));
      console.error('Key Vault emulator: unexpected error', error);
      send(res, errorReply(500, 'InternalServerError', `The emulator failed: ${(error as Error).message}`));
    }
  };

  return (req, res) => void handle(req, res);
}
