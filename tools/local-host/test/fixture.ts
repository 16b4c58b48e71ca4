// A tiny v4 programming-model app in a temp folder, using this repo's real `@azure/functions`.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Registers one function of each kind the host serves, as the real app does through `app.*`. */
export const fixtureAppSource = `
const { app } = require('@azure/functions');

app.http('getItem', {
  route: 'items/{id}',
  methods: ['GET', 'POST'],
  authLevel: 'anonymous',
  handler: async (request, context) => {
    context.log(JSON.stringify({ event: 'getItem', id: request.params.id }));
    return {
      status: request.method === 'POST' ? 201 : 200,
      headers: { 'x-reply': 'yes' },
      jsonBody: {
        id: request.params.id,
        q: request.query.get('q'),
        header: request.headers.get('x-test'),
        body: request.method === 'POST' ? await request.json() : null,
        functionName: context.functionName,
        invocationId: context.invocationId,
      },
    };
  },
});

app.get('secret', { authLevel: 'function', handler: () => ({ body: 'classified' }) });

app.http('explode', {
  authLevel: 'anonymous',
  handler: () => {
    throw new Error('detail that must not reach the caller');
  },
});

app.eventGrid('onKeyEvent', {
  handler: (event, context) => {
    context.info(JSON.stringify({ received: event.id, type: event.eventType ?? event.type, data: context.triggerMetadata.data }));
    if (event.subject === 'fail') throw new Error('cannot handle ' + event.id);
  },
});

app.timer('tick', {
  schedule: '%TICK_SCHEDULE%',
  handler: (timer, context) => {
    context.warn(JSON.stringify({ tick: true, isPastDue: timer.isPastDue, scheduleStatus: timer.scheduleStatus ?? null }));
  },
});
`;

export interface FixtureApp {
  dir: string;
  remove(): void;
}

export function createFixtureApp(source: string = fixtureAppSource): FixtureApp {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'host-fixture-'));
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', main: 'index.js' }));
  writeFileSync(path.join(dir, 'index.js'), source);
  symlinkSync(path.resolve('node_modules'), path.join(dir, 'node_modules'), 'dir');
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface LogLine {
  level: string;
  source: string;
  invocationId?: string;
  message: string;
}

/** Splits `<time> <level> <function> [<invocation id>]: <message>` (ISO times contain no ": "). */
export function parseLogLine(line: string): LogLine {
  const match = /^\S+ (\S+) (\S+)(?: (\S+))?: (.*)$/s.exec(line);
  if (!match) throw new Error(`Not a host log line: ${line}`);
  return { level: match[1]!, source: match[2]!, ...(match[3] ? { invocationId: match[3] } : {}), message: match[4]! };
}

/** Resolves with the first log line that satisfies `predicate`, polling the collected lines. */
export async function waitForLog(lines: string[], predicate: (line: LogLine) => boolean): Promise<LogLine> {
  for (;;) {
    const found = lines.map(parseLogLine).find(predicate);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
