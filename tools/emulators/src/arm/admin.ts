// The ARM emulator's admin API: plain JSON under /_admin/ (no auth; the server only listens on loopback), the same
// controls tests get in-process, so the sandbox can seed hubs and inject faults over HTTP.
import * as z from 'zod';
import { ArmError } from './errors';
import type { OperationFailure, RequestCounts, RequestFault, RequestLogEntry } from './faults';
import { parseInput } from './faults';
import type { HubDataCheck } from './hubData';
import type { JsonObject } from './hubModel';
import type { HubRef } from './hubStore';
import type { RequestKind, ThrottlingSettings } from './throttling';
import type { EffectiveTiming, OperationTimingInput } from './timing';

export interface HubSeed extends HubRef {
  /** A preview-api PUT body. */
  hub: JsonObject;
  /** The hub's own operation timing (else the emulator-wide one applies). */
  timing?: OperationTimingInput | undefined;
}

export interface ArmEmulatorControl {
  /** Creates or replaces a Succeeded hub; `hub` is a preview-api PUT body (so `properties.encryption` counts). */
  seedHub(seed: HubSeed): Promise<JsonObject>;
  /** The hub as a preview api-version returns it. */
  getHub(ref: HubRef): JsonObject | undefined;
  listHubs(): JsonObject[];
  /** Whether the hub can still read its data with the key version it stores. */
  checkHubData(ref: HubRef): Promise<HubDataCheck>;
  faults: {
    setLatency(ms: number): void;
    failNextRequests(fault: RequestFault): void;
    failNextOperations(failure?: OperationFailure): void;
    /** The hub's ETag changes just before its next `count` writes, as if another client wrote first. */
    raceEtag(ref: HubRef, count?: number): void;
    /** ARM's subscription buckets: `{ enabled, reads?, writes?, deletes? }` (see ThrottlingSettings). */
    setThrottling(settings: ThrottlingSettings): void;
    /** The buckets in force: `{ read?, write?, delete? }`, each `{ burst, refillPerSecond }`. */
    throttling(): Partial<Record<RequestKind, { burst: number; refillPerSecond: number }>>;
    /** Clears injected faults and turns throttling off. */
    clear(): void;
  };
  /** How long hub operations run and the Retry-After they advertise. */
  timing: {
    /** Emulator-wide: replaces the given fields of the defaults. */
    setDefaults(timing: OperationTimingInput): void;
    /** One hub's own timing (the hub need not exist yet); `null` returns it to the defaults. */
    setHub(ref: HubRef, timing: OperationTimingInput | null): void;
    /** The timing in force for a hub, or the defaults. */
    of(ref?: HubRef): EffectiveTiming;
  };
  requests(): RequestLogEntry[];
  /** Counts since the last clear, complete even when the bounded log dropped entries. */
  requestCounts(): RequestCounts;
  clearRequests(): void;
  /** Forgets hubs, operations, faults and the request log. */
  reset(): void;
}

const hubRefSchema = z.strictObject({
  subscriptionId: z.string().min(1),
  resourceGroupName: z.string().min(1),
  name: z.string().min(1),
});
const seedSchema = hubRefSchema.extend({ hub: z.looseObject({}), timing: z.looseObject({}).optional() });
const etagRaceSchema = hubRefSchema.extend({ count: z.number().int().min(1).default(1) });

interface AdminReply {
  status: number;
  body?: unknown;
}

const HUB_PATH = /^\/_admin\/hubs\/([^/]+)\/([^/]+)\/([^/]+?)(?:\/(data|timing))?$/;

function parseBody(raw: Buffer): unknown {
  if (raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch (error) {
    throw new ArmError(400, 'InvalidRequestContent', `The body is not valid JSON: ${(error as Error).message}`);
  }
}

export async function handleAdmin(
  control: ArmEmulatorControl,
  method: string,
  url: URL,
  raw: Buffer,
): Promise<AdminReply> {
  const route = `${method} ${url.pathname.replace(/\/+$/, '')}`;
  const done: AdminReply = { status: 204 };
  // Fault inputs are validated by the controls themselves (the same checks apply in-process).
  switch (route) {
    case 'GET /_admin/hubs':
      return { status: 200, body: { value: control.listHubs() } };
    case 'POST /_admin/hubs':
      return { status: 201, body: await control.seedHub(parseInput(seedSchema, parseBody(raw))) };
    case 'PUT /_admin/faults/latency':
      control.faults.setLatency(parseInput(z.strictObject({ ms: z.number() }), parseBody(raw)).ms);
      return done;
    case 'POST /_admin/faults/requests':
      control.faults.failNextRequests(parseBody(raw) as RequestFault);
      return done;
    case 'POST /_admin/faults/operations':
      control.faults.failNextOperations(parseBody(raw) as OperationFailure);
      return done;
    case 'POST /_admin/faults/etag-races': {
      const { count, ...ref } = parseInput(etagRaceSchema, parseBody(raw));
      control.faults.raceEtag(ref, count);
      return done;
    }
    case 'PUT /_admin/throttling':
      control.faults.setThrottling(parseBody(raw) as ThrottlingSettings);
      return done;
    case 'GET /_admin/throttling':
      return { status: 200, body: control.faults.throttling() };
    case 'PUT /_admin/timing':
      control.timing.setDefaults(parseBody(raw) as OperationTimingInput);
      return done;
    case 'GET /_admin/timing':
      return { status: 200, body: control.timing.of() };
    case 'DELETE /_admin/faults':
      control.faults.clear();
      return done;
    case 'GET /_admin/requests':
      return { status: 200, body: { value: control.requests() } };
    case 'DELETE /_admin/requests':
      control.clearRequests();
      return done;
    case 'POST /_admin/reset':
      control.reset();
      return done;
  }
  const hubMatch = HUB_PATH.exec(url.pathname);
  if (hubMatch) {
    const ref: HubRef = {
      subscriptionId: decodeURIComponent(hubMatch[1] ?? ''),
      resourceGroupName: decodeURIComponent(hubMatch[2] ?? ''),
      name: decodeURIComponent(hubMatch[3] ?? ''),
    };
    const what = hubMatch[4];
    if (what === 'timing' && method === 'PUT') {
      control.timing.setHub(ref, parseBody(raw) as OperationTimingInput);
      return done;
    }
    if (what === 'timing' && method === 'DELETE') {
      control.timing.setHub(ref, null);
      return done;
    }
    if (what === 'timing' && method === 'GET') return { status: 200, body: control.timing.of(ref) };
    if (what === 'data' && method === 'GET') return { status: 200, body: await control.checkHubData(ref) };
    if (what === undefined && method === 'GET') {
      const hub = control.getHub(ref);
      if (!hub) throw new ArmError(404, 'ResourceNotFound', `No IoT hub '${ref.name}' in '${ref.resourceGroupName}'.`);
      return { status: 200, body: hub };
    }
  }
  throw new ArmError(
    404,
    'NotFound',
    `No admin route ${route}. Routes: GET|POST /_admin/hubs, GET /_admin/hubs/{sub}/{rg}/{name}[/data], ` +
      'GET|PUT|DELETE /_admin/hubs/{sub}/{rg}/{name}/timing, GET|PUT /_admin/timing, ' +
      'PUT /_admin/faults/latency, POST /_admin/faults/{requests|operations|etag-races}, DELETE /_admin/faults, ' +
      'GET|PUT /_admin/throttling, GET|DELETE /_admin/requests, POST /_admin/reset.',
  );
}
