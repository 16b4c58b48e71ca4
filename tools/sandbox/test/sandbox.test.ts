// `npm start`'s own entry point, headless: the demo story runs to completion and everything it started stops.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function runSandbox(args: string[], env: Record<string, string>, onOutput?: (text: string, stop: () => void) => void) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cmk-sandbox-'));
  dirs.push(dataDir);
  const child = spawn(process.execPath, ['dist/sandbox.js', ...args], {
    env: { ...process.env, SANDBOX_DATA_DIR: dataDir, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stopped = false;
  const stop = () => {
    if (!stopped) child.kill('SIGINT');
    stopped = true;
  };
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    onOutput?.(output, stop);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  return new Promise<{ code: number | null; output: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, output })),
  );
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

describe('sandbox (npm start)', () => {
  it('tells the whole story headless and exits 0 with --once', async () => {
    const { code, output } = await runSandbox(['--once'], { SANDBOX_BASE_PORT: '0' });
    expect(code, output).toBe(0);
    expect(output).toMatch(/event\s+KeyNearExpiry for demo\.vault\.azure\.net\/hub-cmk/);
    expect(output.match(/rotated\s+new version/g)).toHaveLength(1);
    // The move is planned once (the other event about the key joins the job), then each hub takes its steps.
    expect(output.match(/planned\s+job demo\.vault\.azure\.net~hub-cmk~[0-9a-f]{32}: 5 hubs/g)).toHaveLength(1);
    const stepped = [...output.matchAll(/step\s+(\S+): read, PUT accepted \(If-Match\)/g)].map((m) => m[1]);
    expect(stepped.sort()).toEqual([
      'hub-eus-energy',
      'hub-eus-retail',
      'hub-weu-factory',
      'hub-weu-fleet',
      'hub-weu-labs',
    ]);
    expect(output.indexOf('planned ')).toBeLessThan(output.search(/step\s+hub-/));
    expect(output.match(/moved\s+\[\d\/5 hubs\]/g)).toHaveLength(5);
    expect(output).not.toMatch(/failed\s/);
    expect(output).toContain('[5/5 hubs]');
    expect(output).toMatch(/outcome\s+CmkRotator\.HubKeyUpdated/);
    expect(output).toMatch(
      /audit\s+\d+ records in the audit table: .*1 rotated.*5 moved|audit\s+\d+ records.*5 moved.*1 rotated/,
    );
    expect(output).toContain('Story complete: every hub moved, every hub can still read its data');
    expect(output).not.toContain('hub-eus-telemetry:');
  }, 120_000);

  it('--revoke-drill: the preview changes nothing, the revoke needs the name, hubs go dark and come back', async () => {
    const { code, output } = await runSandbox(['--once', '--revoke-drill'], { SANDBOX_BASE_PORT: '0' });
    expect(code, output).toBe(0);
    expect(output).toMatch(/impact\s+5 hubs would lose their data/);
    expect(output).toMatch(/preview\s+revoke \(dryRun, the default\) would disable 2 version\(s\) and cut off 5 hubs/);
    expect(output).toMatch(/refused\s+without the key's name: 400 confirm:/);
    expect(output.match(/hub-\S+ Inaccessible, data unreadable/g)).toHaveLength(5);
    expect(output).toMatch(/restored 200: re-enabled/);
    expect(output).toContain('Drill complete: the hubs went dark on revoke and came back on restore.');
    expect(output.indexOf('revoked  200')).toBeLessThan(output.indexOf('restored 200'));
  }, 120_000);

  it('stays up with the routes to try, and Ctrl-C stops everything it started', async () => {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const { code, output } = await runSandbox([], { SANDBOX_BASE_PORT: String(base) }, (text, stop) => {
      if (text.includes('Ctrl-C stops everything')) stop();
    });
    expect(code, output).toBe(0);
    expect(output).toContain(
      `curl -s -H 'x-functions-key: local-sandbox-key' 'http://127.0.0.1:${base}/api/keys/status`,
    );
    for (let port = base; port <= base + 8; port++) expect(await listening(port), `port ${port}`).toBe(false);
  }, 120_000);

  it('names a port that is already taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as net.AddressInfo).port;
    const { code, output } = await runSandbox(['--once'], { SANDBOX_BASE_PORT: String(port) });
    blocker.close();
    expect(code).toBe(1);
    expect(output).toContain(`Port ${port} (function host (SANDBOX_BASE_PORT)) is already in use`);
  }, 60_000);
});
