// The local Functions host (what `func start` does for this app): serves HTTP triggers under /api, the Event Grid
// extension's webhook, the admin API's function list and invoke, runs timer triggers on their schedules and storage
// queue triggers off their queues.
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RpcInvocationResponse, RpcTypedData } from './coreApi';
import type { EventGridEvent } from './eventGrid';
import { functionNotFound, processEventGridRequest } from './eventGrid';
import { httpOutput, plain, send, sendJson, toRpcHttp, writeHttpResponse } from './httpConversion';
import {
  RequestRefused,
  assertDeclaredLength,
  assertJsonBody,
  assertSameOrigin,
  defaultMaxRequestBodyBytes,
  maxFunctionKeyLength,
  parseJsonBounded,
  readBodyCapped,
  requestUrl,
} from './httpGuards';
import type { HostLogEntry } from './log';
import { formatLogLine, isShown } from './log';
import { parseNcrontab, resolveAppSettings } from './ncrontab';
import { prepareQueueTriggers } from './queueTriggers';
import type { RegisteredFunction } from './registry';
import { loadFunctionApp } from './registry';
import type { RouteMatcher } from './routes';
import { compileRoute } from './routes';
import type { ScheduledTimer } from './timers';
import { startTimers, timerInfo } from './timers';
import { assertPortFree } from '@cmk-rotator/emulators/tcpPorts';

export interface LocalHostOptions {
  /** The function app folder: its package.json `main` registers the functions. */
  appDir: string;
  /** Default 7071, as `func start`; 0 picks a free port. */
  port?: number | undefined;
  /**
   * Required by `function`/`admin` HTTP triggers and the admin API (`x-functions-key` header or `code` query);
   * locally one key stands for Azure's function, host and master keys.
   */
  functionKey?: string | undefined;
  /** Receives each log line; default stdout. */
  log?: (line: string) => void;
  /** Larger request bodies are refused with 413; default Azure's 100 MB. */
  maxRequestBodyBytes?: number;
  /** How long close() waits for queue-triggered invocations in flight (default 30 s); later ones are left running. */
  drainTimeoutMs?: number;
}

export interface LocalHost {
  url: string;
  port: number;
  functions: RegisteredFunction[];
  /** Each queue-triggered function's queue, as resolved from its registration. */
  queues: { functionName: string; queueName: string }[];
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
  if (functionKey && functionKey.length > maxFunctionKeyLength) {
    throw new Error(`The function key must be at most ${maxFunctionKeyLength} characters long.`);
  }
  const port = options.port ?? 7071;
  const maxBodyBytes = options.maxRequestBodyBytes ?? defaultMaxRequestBodyBytes;

  const app = await loadFunctionApp(options.appDir, { log });
  const { httpRoutes, timers } = prepareTriggers(app.functions, functionKey);
  const queueTriggers = prepareQueueTriggers(app.functions, app.appDir, process.env);
  if (port !== 0) await assertPortFree(port, 'local Functions host');

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
      return await track(app.invoke(name, { trigger, reason, ...(metadata ? { triggerMetadata: metadata } : {}) }));
    } catch {
      return undefined; // the registry has logged the failure
    }
  };

  let boundPort = port;
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
      if (fn.authLevel !== 'anonymous') {
        assertSameOrigin(req, boundPort);
        if (!hasKey(req, url, functionKey)) return send(res, { status: 401 });
        assertJsonBody(req);
      }
      const body = await readBodyCapped(req, maxBodyBytes);
      const trigger = { http: toRpcHttp(req, url, body, found.params) };
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
      const body = await readBodyCapped(req, maxBodyBytes);
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
      assertSameOrigin(req, boundPort);
      if (!hasKey(req, url, functionKey)) return send(res, { status: 401 });
      sendJson(res, 200, app.functions);
    },

    invokeFunction: async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
      if (req.method !== 'POST') return send(res, { status: 405 });
      assertSameOrigin(req, boundPort);
      if (!hasKey(req, url, functionKey)) return send(res, { status: 401 });
      assertJsonBody(req);
      const name = decodeURIComponent(url.pathname.replace(/^\/admin\/functions\//i, ''));
      const fn = app.functions.find((f) => f.name.toLowerCase() === name.toLowerCase());
      if (!fn) return send(res, plain(404, `No function named "${name}".`));
      if (fn.triggerType.toLowerCase() === 'httptrigger') {
        return send(res, plain(400, `"${fn.name}" is HTTP-triggered: call it at /api/${fn.route ?? fn.name} instead.`));
      }
      const input = parseInvokeBody(await readBodyCapped(req, maxBodyBytes));
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

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = requestUrl(req);
    assertDeclaredLength(req, maxBodyBytes);
    const path = url.pathname.toLowerCase();
    if (path === '/api' || path.startsWith('/api/')) return handlers.http(req, res, url);
    if (path === '/runtime/webhooks/eventgrid') return handlers.eventGrid(req, res, url);
    if (path === '/admin/functions' || path === '/admin/functions/') return handlers.listFunctions(req, res, url);
    if (path.startsWith('/admin/functions/')) return handlers.invokeFunction(req, res, url);
    send(res, { status: 404 });
  };
  const server = http.createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      if (error instanceof RequestRefused && !res.headersSent) {
        // The client's fault: answer it and close, since any body it is still sending will not be read.
        res.setHeader('connection', 'close');
        return send(res, error.reply);
      }
      hostLog('error', `Request ${req.method} ${req.url?.split('?')[0]} failed: ${(error as Error).message}`);
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
  boundPort = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${boundPort}`;

  const timerRuns = startTimers(timers, async (name, info) => {
    await invokeQuietly(name, info, `Timer fired at ${new Date().toISOString()}`);
  });
  const queueRuns = queueTriggers.start(
    (name, input) => app.invoke(name, input), // tracked by the listeners, which bound how long a stop waits
    (level, functionName, message) => log({ time: new Date(), level, category: 'system', functionName, message }),
  );
  hostLog('information', `Host started on ${url} with ${app.functions.length} function(s).`);

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    queueRuns.stopFetching(); // first and at once: no message is taken once a stop has begun
    await timerRuns.stop();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    await queueRuns.stop(options.drainTimeoutMs ?? 30_000);
    await Promise.allSettled([...inFlight]);
    server.closeAllConnections();
    await closed;
    hostLog('information', 'Host stopped.');
  };

  return {
    url,
    port: boundPort,
    functions: app.functions,
    queues: queueTriggers.queues,
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
  if (!presented || presented.length > maxFunctionKeyLength) return false;
  const [a, b] = [Buffer.from(presented), Buffer.from(functionKey)];
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The admin invoke body, `{ "input": ... }`; a string is the problem. */
function parseInvokeBody(body: Buffer): { value: unknown } | string {
  let parsed: unknown;
  try {
    parsed = parseJsonBounded(body.toString('utf8'));
  } catch (error) {
    return `The body must be JSON: { "input": ... } (${(error as Error).message}).`;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return 'The body must be a JSON object: { "input": ... }.';
  }
  return { value: (parsed as { input?: unknown }).input };
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
    } else if (trigger === 'queuetrigger') {
      lines.push(`        ${fn.name}: queueTrigger (${fn.queueName ?? ''})`);
    } else {
      lines.push(`        ${fn.name}: ${fn.triggerType}`);
    }
    lines.push('');
  }
  return lines;
}
