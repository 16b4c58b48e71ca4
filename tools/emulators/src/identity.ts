// A local stand-in for the App Service / Functions managed identity endpoint.
//
// The app keeps its one credential, `DefaultAzureCredential`; started with IDENTITY_ENDPOINT and IDENTITY_HEADER it
// picks the "AppService" managed identity source of msal-node (which @azure/identity 4 uses) and asks this server.
// What msal-node sends (src/client/ManagedIdentitySources/AppService.ts, msal-node 5):
//   GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<resource>[&client_id=|&object_id=|&mi_res_id=]
//   X-IDENTITY-HEADER: <IDENTITY_HEADER>
// where `resource` is the scope less its "/.default" (identity's mapScopesToResource). What it reads back
// (BaseManagedIdentitySource.getServerTokenResponse): access_token, expires_on (epoch seconds; App Service sends it
// as a string), resource, token_type, and on failure `message` / `error`.
//
// Note for whoever starts the app: with HTTPS_PROXY set, the Azure SDK pipeline sends *every* request through the
// proxy, this plain-HTTP loopback one included, unless NO_PROXY names the host (e.g. NO_PROXY=127.0.0.1,localhost).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { issueToken } from './auth';
import { listenOnLoopback } from './tcpPorts';

/** The only api-version msal-node's App Service source sends. */
export const APP_SERVICE_MSI_API_VERSION = '2019-08-01';
export const IDENTITY_HEADER_NAME = 'X-IDENTITY-HEADER';
const TOKEN_PATH = '/msi/token';
/** The client id a system-assigned identity's tokens carry (any GUID would do; fixed so logs stay comparable). */
export const SYSTEM_ASSIGNED_CLIENT_ID = '2d6f1c4e-0b7a-4d55-9a57-6f3c1b0e9a11';

export interface RunningIdentityEndpoint {
  /** Value for IDENTITY_ENDPOINT. */
  endpoint: string;
  /** Value for IDENTITY_HEADER (the shared secret the endpoint insists on). */
  header: string;
  port: number;
  close(): Promise<void>;
}

export interface IdentityEndpointOptions {
  port?: number;
  /** Defaults to a fresh random secret. */
  header?: string;
  /** Token lifetime in seconds (App Service hands out ~24 h tokens; one hour keeps refreshes exercised). */
  tokenLifetimeSeconds?: number;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** App Service's error shape as msal-node reads it (`message`, `correlationId`), plus the `error` object form. */
function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, {
    statusCode: status,
    message,
    correlationId: randomBytes(16).toString('hex'),
    error: { code, message },
  });
}

export async function startIdentityEndpoint(options: IdentityEndpointOptions = {}): Promise<RunningIdentityEndpoint> {
  const secret = options.header ?? randomBytes(24).toString('hex');
  const lifetime = options.tokenLifetimeSeconds ?? 3600;

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== TOKEN_PATH) return sendError(res, 404, 'NotFound', `No such path: ${url.pathname}`);
    if (req.method !== 'GET') return sendError(res, 405, 'MethodNotAllowed', 'The token endpoint only answers GET.');
    const given = req.headers[IDENTITY_HEADER_NAME.toLowerCase()];
    if (typeof given !== 'string' || !sameSecret(given, secret)) {
      return sendError(res, 401, 'Unauthorized', `Missing or wrong ${IDENTITY_HEADER_NAME} header.`);
    }
    const apiVersion = url.searchParams.get('api-version');
    if (apiVersion !== APP_SERVICE_MSI_API_VERSION) {
      return sendError(
        res,
        400,
        'BadRequest',
        `Unsupported api-version '${apiVersion ?? ''}'; this endpoint speaks ${APP_SERVICE_MSI_API_VERSION}.`,
      );
    }
    const resource = url.searchParams.get('resource');
    if (!resource) return sendError(res, 400, 'BadRequest', 'The resource query parameter is required.');
    // A user-assigned identity is named by exactly one of these; the token then carries that id as its principal.
    const userAssigned = ['client_id', 'object_id', 'mi_res_id']
      .map((name) => url.searchParams.get(name))
      .filter((v): v is string => !!v);
    if (userAssigned.length > 1) {
      return sendError(res, 400, 'BadRequest', 'Only one of client_id, object_id and mi_res_id may be given.');
    }
    const principal = userAssigned[0] ?? 'local-identity';
    const expiresOn = Math.floor(Date.now() / 1000) + lifetime;
    sendJson(res, 200, {
      access_token: issueToken(resource, lifetime, principal),
      expires_on: String(expiresOn),
      resource,
      token_type: 'Bearer',
      client_id: url.searchParams.get('client_id') ?? SYSTEM_ASSIGNED_CLIENT_ID,
    });
  });

  const port = await listenOnLoopback(server, options.port ?? 0);
  return {
    endpoint: `http://127.0.0.1:${port}${TOKEN_PATH}`,
    header: secret,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
