import { inspect } from 'node:util';
import type { LogCategory, LogLevel } from './coreApi';

export interface HostLogEntry {
  time: Date;
  level: LogLevel;
  category: LogCategory;
  /** Absent for lines from the host itself. */
  functionName?: string;
  invocationId?: string;
  message: string;
}

const severity: Record<LogLevel, number> = {
  trace: 0,
  debug: 1,
  information: 2,
  warning: 3,
  error: 4,
  critical: 5,
  none: 6,
};

/** The host.json default (`logLevel.default: Information`): trace and debug lines are dropped. */
export function isShown(level: LogLevel): boolean {
  return severity[level] >= severity.information && level !== 'none';
}

/** `<time> <level> <function> <invocation id>: <message>`, the message exactly as logged. */
export function formatLogLine(entry: HostLogEntry): string {
  const source = entry.functionName ?? 'host';
  const invocation = entry.invocationId ? ` ${entry.invocationId}` : '';
  return `${entry.time.toISOString()} ${entry.level} ${source}${invocation}: ${entry.message}`;
}

/** An error as one log line: its stack (or text) with line breaks kept visible but on one line. */
export function describeError(error: unknown): string {
  const text = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : inspect(error);
  return text.replace(/\r?\n\s*/g, ' | ');
}
