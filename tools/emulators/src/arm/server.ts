// An HTTPS server that answers as https://management.azure.com for Microsoft.Devices/IotHubs, wire-compatible with
// @azure/arm-iothub and raw ARM JSON: bearer auth, api-version gating, ETags, async PUT/DELETE with
// Azure-AsyncOperation polling, paged lists, subscription read/write/delete throttling, per-hub operation timing, and
// an admin API for tests and the sandbox.
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TokenClaims } from '../auth';
import { EmulatorClock } from '../clock';
import type { KeyVaultCrypto } from '../contracts';
import { assertPortFree, listenOnLoopback } from '../tcpPorts';
import { handleAdmin } from './admin';
import type { ArmEmulatorControl } from './admin';
import { ArmError } from './errors';
import type { RequestLogEntry } from './faults';
import { FaultInjector, RequestLog } from './faults';
import { authenticate, headerValue, parseJson, readBody } from './http';
import type { ApiFlavour } from './hubModel';
import { apiFlavourOf } from './hubModel';
import type { HubOperation, HubRef, Preconditions } from './hubStore';
import { hubKeyOf, IotHubStore } from './hubStore';
import { SubscriptionThrottle } from './throttling';
import type { RequestKind } from './throttling';
import { OperationTimings } from './timing';

export interface ArmEmulatorOptions {
  tls: { cert: string; key: string };
  crypto: KeyVaultCrypto;
  clock?: EmulatorClock;
  /** 0 or omitted: any free port. */
  port?: number;
  /** How long a PUT or DELETE stays InProgress before it completes, unless the hub has its own timing (default 1 s). */
  asyncOperationDelayMs?: number;
  /**
   * Retry-After on async operations (never past the operation's end) and on injected 429/503 answers. Omitted: about
   * a quarter of the operation's duration for operations, 1 s for injected faults.
   */
  retryAfterSeconds?: number | undefined;
  /** Hubs per list page before a nextLink. */
  pageSize?: number;
}

/** The running emulator: its address plus the controls tests and the admin API share. */
export interface RunningArmEmulator extends ArmEmulatorControl {
  port: number;
  /** Direct loopback URL (the admin API is also reachable here); ARM clients use https://management.azure.com. */
  url: string;
  close(): Promise<void>;
}

const ROUTES = {
  hub: /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Devices\/IotHubs\/([^/]+)\/?$/i,
  hubsInGroup: /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Devices\/IotHubs\/?$/i,
  hubsInSubscription: /^\/subscriptions\/([^/]+)\/providers\/Microsoft\.Devices\/IotHubs\/?$/i,
  operationResult:
    /^\/subscriptions\/([^/]+)\/providers\/Microsoft\.Devices\/locations\/([^/]+)\/operationResults\/([^/]+)\/?$/i,
};

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface ArmRequest {
  method: string;
  url: URL;
  headers: IncomingHttpHeaders;
  rawBody: Buffer;
  /** Scheme and host the client used, for absolute URLs in headers and nextLinks. */
  origin: string;
  log: RequestLogEntry;
}

const refOf = (match: RegExpExecArray): HubRef => ({
  subscriptionId: decodeURIComponent(match[1] ?? ''),
  resourceGroupName: decodeURIComponent(match[2] ?? ''),
  name: decodeURIComponent(match[3] ?? ''),
});

export async function startArmEmulator(options: ArmEmulatorOptions): Promise<RunningArmEmulator> {
  const clock = options.clock ?? new EmulatorClock();
  const pageSize = options.pageSize ?? 100;
  const faults = new FaultInjector(options.retryAfterSeconds ?? 1);
  const throttle = new SubscriptionThrottle();
  const timings = new OperationTimings({
    operationMs: options.asyncOperationDelayMs ?? 1000,
    ...(options.retryAfterSeconds !== undefined ? { retryAfterSeconds: options.retryAfterSeconds } : {}),
  });
  const log = new RequestLog();
  const store = new IotHubStore({
    crypto: options.crypto,
    clock,
    operationDelayFor: (hubKey) => timings.of(hubKey).operationMs,
    takeOperationFailure: () => faults.takeOperationFailure(),
    takeEtagRace: (key) => faults.takeEtagRace(key),
  });

  // Latency waits end early on close, so no request outlives the server.
  const pendingSleeps = new Set<() => void>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        pendingSleeps.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      pendingSleeps.add(done);
    });

  const apiVersionQuery = (request: ArmRequest): string =>
    `api-version=${encodeURIComponent(request.url.searchParams.get('api-version') ?? '')}`;

  const operationUrl = (request: ArmRequest, operation: HubOperation, asyncInfo: boolean): string =>
    `${request.origin}/subscriptions/${encodeURIComponent(operation.subscriptionId)}/providers/Microsoft.Devices` +
    `/locations/${operation.location}/operationResults/${operation.id}?${apiVersionQuery(request)}` +
    (asyncInfo ? '&asyncinfo' : '');

  const retryAfterOf = (operation: HubOperation): number =>
    timings.retryAfter(operation.hubKey, operation.completesAtMs - Date.now());

  const preconditionsOf = ({ headers }: ArmRequest): Preconditions => ({
    ifMatch: headerValue(headers, 'if-match'),
    ifNoneMatch: headerValue(headers, 'if-none-match'),
  });

  function handleHub(request: ArmRequest, ref: HubRef, flavour: ApiFlavour, claims: TokenClaims): Reply {
    switch (request.method) {
      case 'GET': {
        const hub = store.get(ref);
        if (!hub) throw store.notFound(ref);
        return { status: 200, body: store.renderRecord(hub, flavour), headers: { etag: `"${hub.etag}"` } };
      }
      case 'PUT': {
        const body = parseJson(request.rawBody);
        const accepted = store.beginPut(ref, body, flavour, claims.oid, preconditionsOf(request));
        // The IoT Hub spec answers an accepted create *and* update with 201 plus Azure-AsyncOperation.
        return {
          status: 201,
          body: accepted.hub,
          headers: {
            etag: `"${accepted.etag}"`,
            'azure-asyncoperation': operationUrl(request, accepted.operation, true),
            'retry-after': String(retryAfterOf(accepted.operation)),
          },
        };
      }
      case 'DELETE': {
        const accepted = store.beginDelete(ref, flavour, preconditionsOf(request));
        if (!accepted) return { status: 204 };
        return {
          status: 202,
          body: accepted.hub,
          headers: {
            'azure-asyncoperation': operationUrl(request, accepted.operation, true),
            location: operationUrl(request, accepted.operation, false),
            'retry-after': String(retryAfterOf(accepted.operation)),
          },
        };
      }
      default:
        throw new ArmError(
          405,
          'MethodNotAllowed',
          `${request.method} is not supported on an IoT hub by this emulator.`,
        );
    }
  }

  /** Keyset paging: the skip token is the id of the last hub on the previous page, so paging survives inserts. */
  function handleList(
    request: ArmRequest,
    flavour: ApiFlavour,
    subscriptionId: string,
    resourceGroupName?: string,
  ): Reply {
    const skipToken = request.url.searchParams.get('$skipToken');
    let after: string | undefined;
    if (skipToken !== null) {
      after = Buffer.from(skipToken, 'base64url').toString('utf8').toLowerCase();
      if (!after.startsWith('/subscriptions/')) {
        throw new ArmError(
          400,
          'InvalidRequestContent',
          `The $skipToken '${skipToken}' is not one this service issued.`,
        );
      }
    }
    const remaining = store.list(subscriptionId, resourceGroupName).filter((h) => !after || h.id.toLowerCase() > after);
    const page = remaining.slice(0, pageSize);
    const last = page[page.length - 1];
    const nextLink =
      last && remaining.length > page.length
        ? `${request.origin}${request.url.pathname}?${apiVersionQuery(request)}` +
          `&$skipToken=${Buffer.from(last.id).toString('base64url')}`
        : undefined;
    return {
      status: 200,
      body: { value: page.map((h) => store.renderRecord(h, flavour)), ...(nextLink ? { nextLink } : {}) },
    };
  }

  /**
   * `asyncinfo` (the Azure-AsyncOperation URL) answers the operation resource with status 200; without it (the
   * Location URL) it answers like ARM's Location protocol: 202 while running, then the operation's own result.
   */
  function handleOperation(
    request: ArmRequest,
    flavour: ApiFlavour,
    subscriptionId: string,
    operationId: string,
  ): Reply {
    const operation = store.operation(subscriptionId, operationId);
    if (!operation) {
      throw new ArmError(
        404,
        'OperationNotFound',
        `No operation '${operationId}' exists in subscription '${subscriptionId}'.`,
      );
    }
    const running = operation.status === 'Running';
    const retry = running ? { 'retry-after': String(retryAfterOf(operation)) } : undefined;
    if (request.url.searchParams.has('asyncinfo')) {
      return {
        status: 200,
        body: { status: operation.status, ...(operation.error ? { error: operation.error } : {}) },
        ...(retry ? { headers: retry } : {}),
      };
    }
    if (running) return { status: 202, headers: { ...retry, location: operationUrl(request, operation, false) } };
    if (operation.error) throw new ArmError(500, operation.error.code, operation.error.message);
    if (operation.kind === 'delete') return { status: 204 };
    const hub = store.byKey(operation.hubKey);
    return hub ? { status: 200, body: store.renderRecord(hub, flavour) } : { status: 204 };
  }

  const KIND_OF: Record<string, RequestKind> = { GET: 'read', HEAD: 'read', DELETE: 'delete' };

  async function handleArm(request: ArmRequest, extraHeaders: Record<string, string>): Promise<Reply> {
    if (faults.latencyMs > 0) {
      request.log.fault = `latency ${faults.latencyMs}ms`;
      await sleep(faults.latencyMs);
    }
    const injected = faults.takeRequestFault(request.method, request.url.pathname);
    if (injected) {
      request.log.fault = `status ${injected.status}`;
      throw injected;
    }
    const claims = authenticate(headerValue(request.headers, 'authorization'));
    const path = request.url.pathname;
    const hubMatch = ROUTES.hub.exec(path);
    const groupMatch = ROUTES.hubsInGroup.exec(path);
    const subscriptionMatch = ROUTES.hubsInSubscription.exec(path);
    const operationMatch = ROUTES.operationResult.exec(path);
    const match = hubMatch ?? groupMatch ?? subscriptionMatch ?? operationMatch;
    if (!match) {
      throw new ArmError(
        404,
        'NotFound',
        `No route for ${request.method} ${path}: this emulator serves Microsoft.Devices/IotHubs only.`,
      );
    }
    const subscriptionId = decodeURIComponent(match[1] ?? '');
    const flavour = apiFlavourOf(request.url.searchParams.get('api-version'));
    try {
      Object.assign(
        extraHeaders,
        throttle.take(KIND_OF[request.method] ?? 'write', subscriptionId, claims.oid, clock.now().getTime()),
      );
    } catch (error) {
      request.log.fault = 'throttled';
      throw error;
    }
    if (hubMatch) return handleHub(request, refOf(hubMatch), flavour, claims);
    if (request.method !== 'GET') {
      throw new ArmError(405, 'MethodNotAllowed', `${request.method} is not supported on ${path} by this emulator.`);
    }
    if (groupMatch) return handleList(request, flavour, subscriptionId, decodeURIComponent(groupMatch[2] ?? ''));
    if (subscriptionMatch) return handleList(request, flavour, subscriptionId);
    return handleOperation(request, flavour, subscriptionId, decodeURIComponent(operationMatch?.[3] ?? ''));
  }

  const control: ArmEmulatorControl = {
    seedHub: async ({ hub, timing, ...ref }) => {
      const seeded = await store.seed(ref, hub);
      if (timing !== undefined) timings.setHub(hubKeyOf(ref), timing);
      return seeded;
    },
    getHub: (ref) => store.render(ref, 'preview'),
    listHubs: () => store.list().map((h) => store.renderRecord(h, 'preview')),
    checkHubData: (ref) => store.checkData(ref),
    faults: {
      setLatency: (ms) => faults.setLatency({ ms }),
      failNextRequests: (fault) => faults.failNextRequests(fault),
      failNextOperations: (failure = {}) => faults.failNextOperations(failure),
      raceEtag: (ref, count = 1) => {
        if (!store.get(ref)) throw store.notFound(ref);
        faults.raceEtag(hubKeyOf(ref), count);
      },
      setThrottling: (settings) => throttle.set(settings),
      throttling: () => throttle.settings(),
      clear: () => {
        faults.clear();
        throttle.clear();
      },
    },
    timing: {
      setDefaults: (timing) => timings.setDefaults(timing),
      setHub: (ref, timing) => timings.setHub(hubKeyOf(ref), timing),
      of: (ref) => timings.of(ref && hubKeyOf(ref)),
    },
    requests: () => log.list(),
    requestCounts: () => log.counts(),
    clearRequests: () => log.clear(),
    reset: () => {
      store.reset();
      faults.clear();
      throttle.clear();
      timings.reset();
      log.clear();
    },
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const correlationId = headerValue(req.headers, 'x-ms-correlation-request-id') ?? randomUUID();
    const url = new URL(req.url ?? '/', 'https://management.azure.com');
    const method = (req.method ?? 'GET').toUpperCase();
    const extraHeaders: Record<string, string> = {};
    let entry: RequestLogEntry | undefined;
    let reply: Reply;
    try {
      const rawBody = await readBody(req);
      if (url.pathname.startsWith('/_admin/')) {
        reply = await handleAdmin(control, method, url, rawBody);
      } else {
        entry = log.add({
          time: clock.now().toISOString(),
          requestId,
          method,
          url: req.url ?? '/',
          apiVersion: url.searchParams.get('api-version'),
          headers: {
            ifMatch: headerValue(req.headers, 'if-match'),
            ifNoneMatch: headerValue(req.headers, 'if-none-match'),
            clientRequestId: headerValue(req.headers, 'x-ms-client-request-id'),
            correlationRequestId: headerValue(req.headers, 'x-ms-correlation-request-id'),
            userAgent: headerValue(req.headers, 'user-agent'),
          },
        });
        const origin = `https://${headerValue(req.headers, 'host') ?? 'management.azure.com'}`.replace(/:443$/, '');
        reply = await handleArm({ method, url, headers: req.headers, rawBody, origin, log: entry }, extraHeaders);
      }
    } catch (error) {
      const armError =
        error instanceof ArmError
          ? error
          : new ArmError(500, 'InternalServerError', 'The emulator failed to process the request.');
      if (!(error instanceof ArmError)) console.error('ARM emulator: unexpected error', error);
      reply = {
        status: armError.status,
        body: armError.toBody({ requestId, now: clock.now() }),
        headers: armError.headers,
      };
    }
    if (entry) {
      entry.status = reply.status;
      log.count(method, reply.status);
    }
    if (res.destroyed) return;
    const headers: Record<string, string> = {
      'x-ms-request-id': requestId,
      'x-ms-correlation-request-id': correlationId,
      ...extraHeaders,
      ...reply.headers,
    };
    if (reply.body === undefined) {
      res.writeHead(reply.status, headers).end();
    } else {
      headers['content-type'] = 'application/json; charset=utf-8';
      res.writeHead(reply.status, headers).end(JSON.stringify(reply.body));
    }
  }

  if (options.port) await assertPortFree(options.port, 'ARM emulator');
  const sockets = new Set<Socket>();
  const server = https.createServer(
    { cert: options.tls.cert, key: options.tls.key },
    (req, res) => void handle(req, res),
  );
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await listenOnLoopback(server, options.port ?? 0);

  return {
    port,
    url: `https://127.0.0.1:${port}`,
    ...control,
    close: async () => {
      for (const done of pendingSleeps) done();
      await store.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}
