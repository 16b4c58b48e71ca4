// Fault injection for the ARM emulator: the failures a rotator meets in Azure (latency, 429/5xx, lost ETag races,
// failed long-running operations), switchable in-process or over the admin API.
import * as z from 'zod';
import { ArmError, formatPath, iotHubError } from './errors';

const requestFaultSchema = z.strictObject({
  /** How many matching requests get the error. */
  count: z.number().int().min(1).default(1),
  status: z.union([z.literal(429), z.literal(500), z.literal(502), z.literal(503), z.literal(504)]),
  /** Only requests with this method (any when omitted). */
  method: z.string().min(1).optional(),
  /** Only requests whose path contains this text, case-insensitively (any when omitted). */
  path: z.string().min(1).optional(),
  /** Retry-After for 429/503; the emulator's retryAfterSeconds when omitted. */
  retryAfterSeconds: z.number().int().min(0).optional(),
  /** Who answers: ARM's front door (`{ error: { code, message } }`, the default) or the IoT Hub RP (ErrorDetails). */
  shape: z.enum(['arm', 'iothub']).default('arm'),
});
export type RequestFault = z.input<typeof requestFaultSchema>;

const operationFailureSchema = z.strictObject({
  count: z.number().int().min(1).default(1),
  code: z.string().min(1).default('InternalServerError'),
  message: z.string().min(1).default('The operation failed because of an internal error (injected fault).'),
});
export type OperationFailure = z.input<typeof operationFailureSchema>;

const latencySchema = z.strictObject({ ms: z.number().int().min(0) });

/** Parses input with a schema and reports the first problem as ARM's 400 (the admin API speaks ARM's error shape). */
export function parseInput<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? `'${formatPath(issue.path)}' ` : '';
  throw new ArmError(400, 'InvalidRequestContent', `Invalid request: ${where}${issue?.message ?? 'is invalid'}.`);
}

const STATUS_CODES: Record<number, { code: string; message: string }> = {
  429: { code: 'TooManyRequests', message: 'The request was throttled (injected fault). Retry after the given delay.' },
  500: { code: 'InternalServerError', message: 'The server encountered an internal error (injected fault).' },
  502: { code: 'BadGateway', message: 'The gateway received an invalid response (injected fault).' },
  503: { code: 'ServiceUnavailable', message: 'The service is temporarily unavailable (injected fault).' },
  504: { code: 'GatewayTimeout', message: 'The gateway timed out (injected fault).' },
};
/** IoT Hub's own codes for these statuses (ThrottlingException 429001, ServerError 500001, GatewayTimeout 504101, …). */
const IOT_HUB_CODES: Record<number, number> = { 429: 429001, 500: 500001, 502: 502001, 503: 503001, 504: 504101 };

export class FaultInjector {
  latencyMs = 0;
  private requestFaults: Array<z.output<typeof requestFaultSchema>> = [];
  private operationFailures: Array<z.output<typeof operationFailureSchema>> = [];
  private readonly etagRaces = new Map<string, number>();

  constructor(private readonly defaultRetryAfterSeconds: number) {}

  setLatency(input: unknown): void {
    this.latencyMs = parseInput(latencySchema, input).ms;
  }

  failNextRequests(input: unknown): void {
    this.requestFaults.push(parseInput(requestFaultSchema, input));
  }

  failNextOperations(input: unknown): void {
    this.operationFailures.push(parseInput(operationFailureSchema, input));
  }

  raceEtag(hubKey: string, count: number): void {
    this.etagRaces.set(hubKey, (this.etagRaces.get(hubKey) ?? 0) + count);
  }

  clear(): void {
    this.latencyMs = 0;
    this.requestFaults = [];
    this.operationFailures = [];
    this.etagRaces.clear();
  }

  /** The injected error for this request, if one is queued for it (consumes one use). */
  takeRequestFault(method: string, path: string): ArmError | undefined {
    const index = this.requestFaults.findIndex(
      (f) =>
        (!f.method || f.method.toUpperCase() === method.toUpperCase()) &&
        (!f.path || path.toLowerCase().includes(f.path.toLowerCase())),
    );
    const fault = this.requestFaults[index];
    if (!fault) return undefined;
    if (--fault.count === 0) this.requestFaults.splice(index, 1);
    const { code, message } = STATUS_CODES[fault.status] ?? { code: 'InternalServerError', message: 'Injected fault.' };
    const headers: Record<string, string> =
      fault.status === 429 || fault.status === 503
        ? { 'retry-after': String(fault.retryAfterSeconds ?? this.defaultRetryAfterSeconds) }
        : {};
    return fault.shape === 'iothub'
      ? iotHubError(fault.status, IOT_HUB_CODES[fault.status] ?? fault.status * 1000 + 1, message, headers)
      : new ArmError(fault.status, code, message, headers);
  }

  /** True when someone else should write this hub just before the caller's write (consumes one use). */
  takeEtagRace(hubKey: string): boolean {
    const remaining = this.etagRaces.get(hubKey) ?? 0;
    if (remaining <= 0) return false;
    if (remaining === 1) this.etagRaces.delete(hubKey);
    else this.etagRaces.set(hubKey, remaining - 1);
    return true;
  }

  takeOperationFailure(): { code: string; message: string } | undefined {
    const failure = this.operationFailures[0];
    if (!failure) return undefined;
    if (--failure.count === 0) this.operationFailures.shift();
    return { code: failure.code, message: failure.message };
  }
}

export interface RequestLogEntry {
  time: string;
  requestId: string;
  method: string;
  /** Path and query as received. */
  url: string;
  apiVersion: string | null;
  /** Headers a test may want to assert on; never Authorization. */
  headers: {
    ifMatch?: string | undefined;
    ifNoneMatch?: string | undefined;
    clientRequestId?: string | undefined;
    correlationRequestId?: string | undefined;
    userAgent?: string | undefined;
  };
  status?: number;
  /** Which injected fault shaped the answer, if any. */
  fault?: string;
}

/** Requests since the log was last cleared, by method and answer, however many the bounded log kept. */
export interface RequestCounts {
  total: number;
  byMethod: Record<string, number>;
  /** 429 answers (throttling, injected or from the buckets). */
  throttled: number;
  /** PUTs that ARM accepted (201/200). */
  acceptedPuts: number;
}

/** Bounded, so a long sandbox session does not grow without limit; the counts are kept in full. */
export class RequestLog {
  private entries: RequestLogEntry[] = [];
  private tally: RequestCounts = emptyCounts();

  constructor(private readonly capacity = 5000) {}

  add(entry: RequestLogEntry): RequestLogEntry {
    this.entries.push(entry);
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
    return entry;
  }

  /** Counts an answered request (called once its status is known). */
  count(method: string, status: number): void {
    this.tally.total++;
    this.tally.byMethod[method] = (this.tally.byMethod[method] ?? 0) + 1;
    if (status === 429) this.tally.throttled++;
    if (method === 'PUT' && (status === 200 || status === 201)) this.tally.acceptedPuts++;
  }

  counts(): RequestCounts {
    return { ...this.tally, byMethod: { ...this.tally.byMethod } };
  }

  list(): RequestLogEntry[] {
    return this.entries.map((e) => ({ ...e, headers: { ...e.headers } }));
  }

  clear(): void {
    this.entries = [];
    this.tally = emptyCounts();
  }
}

function emptyCounts(): RequestCounts {
  return { total: 0, byMethod: {}, throttled: 0, acceptedPuts: 0 };
}
