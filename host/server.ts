// The local Functions host (what `func start` does for this app): serves HTTP triggers under /api, the Event Grid
// extension's webhook, the admin API's function list and invoke, and runs timer triggers on their schedules.
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RpcHttpCookie, RpcHttpData, RpcInvocationResponse, RpcNullableString, RpcTypedData } from './core-api';
import type { EventGridEvent, WebhookReply } from './event-grid';
import { functionNotFound, processEventGridRequest } from './event-grid';
import type { HostLogEntry } from './log';
import { formatLogLine, isShown } from './log';
import { parseNcrontab, resolveAppSettings } from './ncrontab';
import type { RegisteredFunction } from './registry';
import { loadFunctionApp } from './registry';
import type { RouteMatcher } from './routes';
import { compileRoute } from './routes';
import type { ScheduledTimer } from './timers';
import { startTimers, timerInfo } from './timers';
import { assertPortFree } from '../emulators/ports';

export interface LocalHostOptions {
  /** The function app folder: its package.json `main` registers the functions. */
  appDir: string;
  /** Default 7071, as `func start`; 0 picks a free port. */
  port?: number;
  /**
   * Required by `function`/`admin` HTTP triggers and the admin API (`x-functions-key` header or `code` query);
   * locally one key stands for Azure's function, host and master keys.
   */
  functionKey?: string;
  /** Receives each log line; default stdout. */
  log?: (line: string) => void;
}

export interface LocalHost {
  url: string;
  port: number;
  functions: RegisteredFunction[];
  close(): Promise<void>;
}

interface HttpRoute {
  fn: RegisteredFunction;
  matcher: RouteMatcher;
}

const programmaticReason = 'This function was programmatically called via the host APIs.';

export async function startLocalHost(options: LocalHostOptions): Promise<LocalHost> {
  const writeLine = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const log = (entry: HostLogEntry): void => {
    if (isShown(entry.level)) writeLine(formatLogLine(entry));
  };
  const hostLog = (level: HostLogEntry['level'], message: string): void =>
    log({ time: new Date(), level, category: 'system', message });
  const functionKey = options.functionKey || undefined;
  const port = options.port ?? 7071;

  const app = await loadFunctionApp(options.appDir, { log });
  let httpRoutes: HttpRoute[];
  let timers: ScheduledTimer[];
  try {
    ({ httpRoutes, timers } = prepareTriggers(app.functions, functionKey));
    if (port !== 0) await assertPortFree(port, 'local Functions host');
  } catch (error) {
    await app.terminate();
    throw error;
  }

  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(work: Promise<T>): Promise<T> => {
    inFlight.add(work);
    const forget = (): void => void inFlight.delete(work);
    work.then(forget, forget);
    return work;
  };

  const invokeQuietly = async (
    name: string,
    trigger: RpcTypedData,
    reason: string,
    metadata?: Record<string, RpcTypedData>,
  ) => {
    try {
      return await track(app.invoke(name, { trigger, triggerMetadata: metadata, reason }));
    } catch {
      return undefined; // the registry has logged the failure
    }
  };

  const handlers = {
    http: async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
      const routePath = url.pathname.replace(/^\/api\/?/i, '');
      const method = (req.method ?? 'GET').toUpperCase();
      let found: { route: HttpRoute; params: Record<string, string | null> } | undefined;
      for (const route of httpRoutes) {
        if (route.fn.methods && !route.fn.methods.includes(method)) continue;
        const params = route.matcher.match(routePath);
        if (params) {
          found = { route, params };
          break;
        }
      }
      if (!found) return send(res, { status: 404 });
      const { fn } = found.route;
      if (fn.authLevel !== 'anonymous' && !hasKey(req, url, functionKey)) return send(res, { status: 401 });
      const body = await readBody(req);
      const trigger = { http: toRpcHttp(req, body, found.params) };
      let response: RpcInvocationResponse;
      try {
        response = await track(app.invoke(fn.name, { trigger, reason: programmaticReason }));
      } catch {
        return send(res, { status: 500 });
      }
      writeHttpResponse(res, httpOutput(fn, response));
    },

    eventGrid: async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
      const functionName = url.searchParams.get('functionName');
      const fn = app.functions.find(
        (f) => f.name === functionName && f.triggerType.toLowerCase() === 'eventgridtrigger',
      );
      if (!fn) return send(res, functionNotFound(functionName));
      const body = await readBody(req);
      const deliver = async (event: EventGridEvent): Promise<boolean> => {
        const metadata = 'data' in event ? { data: { json: JSON.stringify(event.data) } } : undefined;
        const reason = `EventGrid trigger fired at ${new Date().toISOString()}`;
        return (await invokeQuietly(fn.name, { json: JSON.stringify(event) }, reason, metadata)) !== undefined;
      };
      send(
        res,
        await processEventGridRequest({ method: req.method ?? 'POST', headers: req.headers, body }, fn.name, deliver),
      );
    },

    listFunctions: (req: IncomingMessage, res: ServerResponse, url: URL): void => {
      if (req.method !== 'GET') return send(res, { status: 405 });
      if (!hasKey(req, url, functionKey)) return send(res, { status: 401 });
      sendJson(res, 200, app.functions);
    },

    invokeFunction: async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
      if (req.method !== 'POST') return send(res, { status: 405 });
      if (!hasKey(req, url, functionKey)) return send(res, { status: 401 });
      const name = decodeURIComponent(url.pathname.replace(/^\/admin\/functions\//i, ''));
      const fn = app.functions.find((f) => f.name.toLowerCase() === name.toLowerCase());
      if (!fn) return send(res, plain(404, `No function named "${name}".`));
      if (fn.triggerType.toLowerCase() === 'httptrigger') {
        return send(res, plain(400, `"${fn.name}" is HTTP-triggered: call it at /api/${fn.route ?? fn.name} instead.`));
      }
      const input = parseInvokeBody(await readBody(req));
      if (typeof input === 'string') return send(res, plain(400, input));
      const trigger: RpcTypedData =
        fn.triggerType.toLowerCase() === 'timertrigger'
          ? timerInfo(undefined)
          : typeof input.value === 'string'
            ? { string: input.value }
            : { json: JSON.stringify(input.value ?? null) };
      // Like Azure: accepted now, run in the background (the outcome shows in the log).
      void invokeQuietly(fn.name, trigger, programmaticReason);
      send(res, { status: 202 });
    },
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = url.pathname.toLowerCase();
    let handled: Promise<void> | void;
    if (path === '/api' || path.startsWith('/api/')) handled = handlers.http(req, res, url);
    else if (path === '/runtime/webhooks/eventgrid') handled = handlers.eventGrid(req, res, url);
    else if (path === '/admin/functions' || path === '/admin/functions/')
      handled = handlers.listFunctions(req, res, url);
    else if (path.startsWith('/admin/functions/')) handled = handlers.invokeFunction(req, res, url);
    else handled = send(res, { status: 404 });
    Promise.resolve(handled).catch((error: unknown) => {
      hostLog('error', `Request ${req.method} ${url.pathname} failed: ${(error as Error).message}`);
      if (!res.headersSent) send(res, { status: 500 });
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const boundPort = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${boundPort}`;

  const timerRuns = startTimers(timers, async (name, info) => {
    await invokeQuietly(name, info, `Timer fired at ${new Date().toISOString()}`);
  });
  hostLog('information', `Host started on ${url} with ${app.functions.length} function(s).`);
  for (const fn of app.functions) {
    if (!['httptrigger', 'eventgridtrigger', 'timertrigger'].includes(fn.triggerType.toLowerCase())) {
      hostLog(
        'warning',
        `"${fn.name}" (${fn.triggerType}) is not triggered locally; run it with POST /admin/functions/${fn.name}.`,
      );
    }
  }

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    await timerRuns.stop();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    await Promise.allSettled([...inFlight]);
    server.closeAllConnections();
    await closed;
    await app.terminate();
    hostLog('information', 'Host stopped.');
  };

  return {
    url,
    port: boundPort,
    functions: app.functions,
    close: () => (closing ??= close()),
  };
}

/** Validates what the triggers need before serving; a key is mandatory once any function requires one. */
function prepareTriggers(
  functions: RegisteredFunction[],
  functionKey: string | undefined,
): { httpRoutes: HttpRoute[]; timers: ScheduledTimer[] } {
  const keyed = functions.filter((f) => f.triggerType.toLowerCase() === 'httptrigger' && f.authLevel !== 'anonymous');
  if (keyed.length > 0 && !functionKey) {
    throw new Error(
      `No function key is configured, but ${keyed.map((f) => `"${f.name}" (authLevel ${f.authLevel})`).join(', ')} ` +
        'require one: set ROTATOR_LOCAL_FUNCTION_KEY (or the functionKey option).',
    );
  }
  const httpRoutes = functions
    .filter((f) => f.triggerType.toLowerCase() === 'httptrigger')
    .map((fn) => {
      try {
        return { fn, matcher: compileRoute(fn.route ?? fn.name) };
      } catch (error) {
        throw new Error(`Function "${fn.name}": ${(error as Error).message}`);
      }
    })
    .sort((a, b) => b.matcher.precedence - a.matcher.precedence);
  const timers = functions
    .filter((f) => f.triggerType.toLowerCase() === 'timertrigger')
    .map((fn): ScheduledTimer => {
      const where = `Function "${fn.name}" schedule`;
      try {
        const trigger = Object.values(fn.bindings).find((b) => b.type === fn.triggerType);
        return {
          functionName: fn.name,
          schedule: parseNcrontab(resolveAppSettings(fn.schedule ?? '', process.env, where)),
          runOnStartup: trigger?.runOnStartup === true,
        };
      } catch (error) {
        const message = (error as Error).message;
        throw new Error(message.startsWith(where) ? message : `${where}: ${message}`);
      }
    });
  return { httpRoutes, timers };
}

function hasKey(req: IncomingMessage, url: URL, functionKey: string | undefined): boolean {
  if (!functionKey) return false;
  const header = req.headers['x-functions-key'];
  const presented = (Array.isArray(header) ? header[0] : header) ?? url.searchParams.get('code');
  if (!presented) return false;
  const [a, b] = [Buffer.from(presented), Buffer.from(functionKey)];
  return a.length === b.length && timingSafeEqual(a, b);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The request as the host hands it to the Node.js worker (nullable dictionaries, lower-case headers, raw bytes). */
function toRpcHttp(req: IncomingMessage, body: Buffer, params: Record<string, string | null>): RpcHttpData {
  const nullableHeaders: Record<string, RpcNullableString> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    const value = req.rawHeaders[i + 1]!;
    const existing = nullableHeaders[name]?.value;
    nullableHeaders[name] = { value: existing === undefined || existing === null ? value : `${existing},${value}` };
  }
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
  const nullableQuery: Record<string, RpcNullableString> = {};
  for (const [name, value] of url.searchParams) {
    const existing = nullableQuery[name]?.value;
    nullableQuery[name] = { value: existing === undefined || existing === null ? value : `${existing},${value}` };
  }
  const nullableParams: Record<string, RpcNullableString> = {};
  for (const [name, value] of Object.entries(params)) if (value !== null) nullableParams[name] = { value };
  return {
    method: req.method ?? 'GET',
    url: url.toString(),
    nullableHeaders,
    nullableQuery,
    nullableParams,
    body: body.length > 0 ? { bytes: body } : undefined,
  };
}

/** The HTTP output binding's value: the return value (`$return`) or the named output the function set. */
function httpOutput(fn: RegisteredFunction, response: RpcInvocationResponse): RpcHttpData | undefined {
  const output = Object.entries(fn.bindings).find(([, b]) => b.direction === 'out' && b.type.toLowerCase() === 'http');
  if (!output) return undefined;
  const data =
    output[0] === '$return' ? response.returnValue : response.outputData?.find((o) => o.name === output[0])?.data;
  return data?.http ?? undefined;
}

function writeHttpResponse(res: ServerResponse, response: RpcHttpData | undefined): void {
  // No response from the function: the host answers 200 with no body.
  if (!response) return send(res, { status: 200 });
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    if (!['content-length', 'transfer-encoding', 'connection'].includes(name.toLowerCase())) headers[name] = value;
  }
  const cookies = (response.cookies ?? []).map(toSetCookie);
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  const body =
    response.body?.bytes ?? (typeof response.body?.string === 'string' ? Buffer.from(response.body.string) : undefined);
  res.writeHead(Number(response.statusCode ?? 200), headers);
  res.end(body ? Buffer.from(body) : undefined);
}

function toSetCookie(cookie: RpcHttpCookie): string {
  const parts = [`${cookie.name ?? ''}=${cookie.value ?? ''}`, `path=${cookie.path?.value ?? '/'}`];
  if (cookie.domain?.value) parts.push(`domain=${cookie.domain.value}`);
  const expires = cookie.expires?.value;
  if (expires)
    parts.push(`expires=${new Date(Number(expires.seconds ?? 0) * 1000 + (expires.nanos ?? 0) / 1e6).toUTCString()}`);
  if (typeof cookie.maxAge?.value === 'number') parts.push(`max-age=${Math.trunc(cookie.maxAge.value)}`);
  if (cookie.secure?.value) parts.push('secure');
  // 'none' means "not set"; 'explicitNone' is SameSite=None.
  if (cookie.sameSite && cookie.sameSite !== 'none') {
    parts.push(`samesite=${cookie.sameSite === 'explicitNone' ? 'none' : cookie.sameSite}`);
  }
  if (cookie.httpOnly?.value) parts.push('httponly');
  return parts.join('; ');
}

/** The admin invoke body, `{ "input": ... }`; a string is the problem. */
function parseInvokeBody(body: Buffer): { value: unknown } | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return 'The body must be JSON: { "input": ... }.';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return 'The body must be a JSON object: { "input": ... }.';
  }
  return { value: (parsed as { input?: unknown }).input };
}

function plain(status: number, body: string): WebhookReply {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body };
}

function send(res: ServerResponse, reply: WebhookReply): void {
  res.writeHead(reply.status, reply.headers);
  res.end(reply.body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(value));
}

/** The listing `func start` prints: HTTP functions with their URLs, the others with their trigger. */
export function describeFunctions(functions: RegisteredFunction[], baseUrl: string): string[] {
  const lines = ['Functions:', ''];
  for (const fn of functions) {
    const trigger = fn.triggerType.toLowerCase();
    if (trigger === 'httptrigger') {
      const methods = fn.methods ? `[${fn.methods.join(',')}]` : '[ANY]';
      lines.push(`        ${fn.name}: ${methods} ${baseUrl}/api/${(fn.route ?? fn.name).replace(/^\/+/, '')}`);
    } else if (trigger === 'eventgridtrigger') {
      lines.push(
        `        ${fn.name}: eventGridTrigger ${baseUrl}/runtime/webhooks/eventgrid?functionName=${encodeURIComponent(fn.name)}`,
      );
    } else if (trigger === 'timertrigger') {
      lines.push(`        ${fn.name}: timerTrigger (${fn.schedule ?? ''})`);
    } else {
      lines.push(`        ${fn.name}: ${fn.triggerType}`);
    }
    lines.push('');
  }
  return lines;
}
