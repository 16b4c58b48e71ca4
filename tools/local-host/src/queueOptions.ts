// The storage queue trigger's settings, read from host.json `extensions.queues` with the Functions host's defaults
// (Microsoft.Azure.WebJobs.Extensions.Storage.Queues `QueuesOptions`), plus the one knob that exists only locally.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type QueueMessageEncoding = 'base64' | 'none';

export interface QueueTriggerOptions {
  /** Messages fetched per receive, 1-32 (default 16). */
  batchSize: number;
  /** A new batch is fetched once in-flight messages drop to this (default batchSize/2 × processor count). */
  newBatchThreshold: number;
  /** Ceiling of the empty-queue back-off, at least 100 ms (default 1 min). */
  maxPollingIntervalMs: number;
  /** Dequeues before a failing message moves to `<queue>-poison` (default 5). */
  maxDequeueCount: number;
  /** How long a failed message stays invisible before its next try (default 0). */
  visibilityTimeoutMs: number;
  /** How message text is carried on the wire (default base64). */
  messageEncoding: QueueMessageEncoding;
  /**
   * How long a received message stays invisible while its function runs; renewed at half-time until it ends.
   * The host fixes this at 10 minutes; only the local host lets LOCAL_HOST_QUEUE_LEASE_SECONDS shorten it, so that
   * tests and the sandbox can watch a killed instance's messages come back without waiting 10 minutes.
   */
  leaseMs: number;
}

/** The QueueListener's first back-off step and the smallest allowed maxPollingInterval. */
export const minimumPollingIntervalMs = 100;
const hostLeaseMs = 10 * 60_000;
const maxBatchSize = 32;
/** Storage refuses a visibility timeout beyond 7 days. */
const maxLeaseSeconds = 7 * 24 * 3600;
export const leaseSecondsVariable = 'LOCAL_HOST_QUEUE_LEASE_SECONDS';

/** Reads `<appDir>/host.json` (absent: every default) and the local lease override from `env`. */
export function loadQueueTriggerOptions(appDir: string, env: NodeJS.ProcessEnv): QueueTriggerOptions {
  const hostJsonPath = path.join(appDir, 'host.json');
  let queues: Record<string, unknown> = {};
  if (existsSync(hostJsonPath)) {
    let hostJson: unknown;
    try {
      hostJson = JSON.parse(readFileSync(hostJsonPath, 'utf8'));
    } catch (error) {
      throw new Error(`${hostJsonPath} is not valid JSON: ${(error as Error).message}`);
    }
    const extensions = isRecord(hostJson) ? propertyIgnoringCase(hostJson, 'extensions') : undefined;
    const section = isRecord(extensions) ? propertyIgnoringCase(extensions, 'queues') : undefined;
    if (section !== undefined && !isRecord(section)) throw new Error('host.json extensions.queues must be an object.');
    queues = section ?? {};
  }
  return parseQueueTriggerOptions(queues, env);
}

/** The host.json section as the host binds it: property names ignore case, numbers may be written as strings. */
export function parseQueueTriggerOptions(
  queues: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  processorCount = defaultProcessorCount(env),
): QueueTriggerOptions {
  const setting = (name: string) => ({
    name: `host.json extensions.queues.${name}`,
    value: propertyIgnoringCase(queues, name),
  });
  const batchSize = readInteger(setting('batchSize'), 16, 1, maxBatchSize);
  return {
    batchSize,
    newBatchThreshold: readInteger(setting('newBatchThreshold'), Math.floor(batchSize / 2) * processorCount, 0),
    maxPollingIntervalMs: readTimeSpan(setting('maxPollingInterval'), 60_000, minimumPollingIntervalMs),
    maxDequeueCount: readInteger(setting('maxDequeueCount'), 5, 1),
    visibilityTimeoutMs: readTimeSpan(setting('visibilityTimeout'), 0, 0),
    messageEncoding: readEncoding(setting('messageEncoding')),
    leaseMs: readLeaseOverride(env[leaseSecondsVariable]),
  };
}

/** The extension counts one processor on the Consumption plan (WEBSITE_SKU=Dynamic), every core elsewhere. */
function defaultProcessorCount(env: NodeJS.ProcessEnv): number {
  return env.WEBSITE_SKU?.toLowerCase() === 'dynamic' ? 1 : os.availableParallelism();
}

interface Setting {
  name: string;
  value: unknown;
}

function readInteger({ name, value }: Setting, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value === null) return fallback;
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
    throw new Error(`${name} must be a whole number ${range}, got ${JSON.stringify(value)}.`);
  }
  return number;
}

/** .NET TimeSpan text: `[d.]hh:mm[:ss[.fffffff]]`. */
const timeSpanPattern = /^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$/;

function readTimeSpan({ name, value }: Setting, fallbackMs: number, minMs: number): number {
  if (value === undefined || value === null) return fallbackMs;
  if (typeof value === 'number' || (typeof value === 'string' && /^\s*\d+\s*$/.test(value))) {
    // The host binds this to a TimeSpan, which reads a bare number as days: 2000 would mean 2000 days. The
    // Functions 1.x form (milliseconds) is a common leftover, so say so instead of silently waiting for years.
    throw new Error(
      `${name} is a time span ("hh:mm:ss", e.g. "00:00:02"); the host reads the bare number ${String(value)} as days.`,
    );
  }
  const match = typeof value === 'string' ? timeSpanPattern.exec(value.trim()) : null;
  if (!match) throw new Error(`${name} must be a time span such as "00:01:00", got ${JSON.stringify(value)}.`);
  const [, days = '0', hours = '0', minutes = '0', seconds = '0', fraction = ''] = match;
  if (Number(hours) > 23 || Number(minutes) > 59 || Number(seconds) > 59) {
    throw new Error(`${name} must be a time span such as "00:01:00", got ${JSON.stringify(value)}.`);
  }
  const ms =
    ((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60_000 +
    Number(seconds) * 1000 +
    Math.round(Number(`0.${fraction || '0'}`) * 1000);
  if (ms < minMs) throw new Error(`${name} must not be less than ${minMs} ms, got ${JSON.stringify(value)}.`);
  return ms;
}

function readEncoding({ name, value }: Setting): QueueMessageEncoding {
  if (value === undefined || value === null) return 'base64';
  const text = typeof value === 'string' ? value.toLowerCase() : undefined;
  if (text === 'base64' || text === 'none') return text;
  throw new Error(`${name} must be "base64" or "none", got ${JSON.stringify(value)}.`);
}

function readLeaseOverride(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return hostLeaseMs;
  const seconds = Number(text);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > maxLeaseSeconds) {
    throw new Error(
      `${leaseSecondsVariable} must be a whole number of seconds from 1 to ${maxLeaseSeconds}, got "${text}".`,
    );
  }
  return seconds * 1000;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function propertyIgnoringCase(record: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(record).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : record[key];
}
