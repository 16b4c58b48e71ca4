// Runs the function app's local host (`node dist/host.js`, what `npm run serve` runs) as a child process and
// reads its log: each line `<time> <level> <function> [<invocation id>]: <message>`, the app's messages being
// `<event> {json}`.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { waitForPort } from '@cmk-rotator/emulators/tcpPorts';

export interface HostLogLine {
  raw: string;
  level: string;
  functionName: string;
  invocationId?: string;
  /** The app's structured event name (`hub.moved`, ...), when the message is one. */
  event?: string;
  fields: Record<string, unknown>;
}

export interface RunningFunctionHost {
  url: string;
  port: number;
  /** The host process's id (for resource measurements such as peak memory). */
  pid: number | undefined;
  logs: HostLogLine[];
  onLog(listener: (line: HostLogLine) => void): () => void;
  /** Resolves with the first log line (past or future) that matches. */
  waitForLog(match: (line: HostLogLine) => boolean, timeoutMs?: number): Promise<HostLogLine>;
  /** SIGKILL: the process dies mid-flight, as a crashed instance does. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

const LINE = /^\S+\s+(\w+)\s+([^\s:]+)(?:\s+([0-9a-f-]{36}))?:\s?(.*)$/;
const EVENT = /^([a-z]+\.[a-z-]+)\s+(\{.*\})$/;

export function parseHostLine(raw: string): HostLogLine {
  const m = LINE.exec(raw);
  if (!m) return { raw, level: 'information', functionName: 'host', fields: {} };
  const [, level = '', functionName = '', invocationId, message = ''] = m;
  const event = EVENT.exec(message);
  let fields: Record<string, unknown> = {};
  if (event?.[2]) {
    try {
      fields = JSON.parse(event[2]) as Record<string, unknown>;
    } catch {
      fields = {};
    }
  }
  return {
    raw,
    level,
    functionName,
    ...(invocationId ? { invocationId } : {}),
    ...(event?.[1] ? { event: event[1] } : {}),
    fields,
  };
}

export async function startFunctionHost(options: {
  env: NodeJS.ProcessEnv;
  port: number;
  appDir?: string;
  /** Raw output lines, as they come (the sandbox prints some). */
  echo?: (line: string) => void;
}): Promise<RunningFunctionHost> {
  const appDir = options.appDir ?? process.cwd();
  const child: ChildProcess = spawn(process.execPath, [path.join(appDir, 'dist/host.js')], {
    cwd: appDir,
    env: { ...options.env, PORT: String(options.port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: HostLogLine[] = [];
  const listeners = new Set<(line: HostLogLine) => void>();
  const output: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (raw) => {
      output.push(raw);
      options.echo?.(raw);
      const line = parseHostLine(raw);
      logs.push(line);
      for (const listener of listeners) listener(line);
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const failedEarly = exited.then((code) => {
    throw new Error(`The function host exited (${code ?? 'signal'}) before it served:\n${output.join('\n')}`);
  });
  await Promise.race([waitForPort(options.port, 30_000), failedEarly]);
  failedEarly.catch(() => undefined);
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    url: `http://127.0.0.1:${options.port}`,
    port: options.port,
    pid: child.pid,
    logs,
    onLog: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    waitForLog: (match, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const found = logs.find(match);
        if (found) return resolve(found);
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error(`No matching host log line within ${timeoutMs} ms.`));
        }, timeoutMs);
        const listener = (line: HostLogLine) => {
          if (!match(line)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(line);
        };
        listeners.add(listener);
      }),
    kill: () => stopWith('SIGKILL'),
    stop: () => stopWith('SIGTERM'),
  };
}
