// Starts Azurite (the Storage emulator from npm) as a child process for the audit log, jobs and dead letters.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { assertPortFree, freePort, waitForPort } from './tcpPorts';

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
const DEV_ACCOUNT = 'devstoreaccount1';
const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface RunningAzurite {
  connectionString: string;
  blobPort: number;
  tablePort: number;
  queuePort: number;
  close(): Promise<void>;
}

export async function startAzurite(
  options: { location?: string; blobPort?: number; queuePort?: number; tablePort?: number } = {},
): Promise<RunningAzurite> {
  const ports = {
    blobPort: options.blobPort ?? (await freePort()),
    queuePort: options.queuePort ?? (await freePort()),
    tablePort: options.tablePort ?? (await freePort()),
  };
  for (const [name, port] of Object.entries(ports)) await assertPortFree(port, `Azurite ${name}`);
  const script = createRequire(__filename).resolve('azurite/dist/src/azurite.js');
  const args = [
    script,
    '--silent',
    '--skipApiVersionCheck',
    '--disableTelemetry',
    '--loose',
    '--blobPort',
    String(ports.blobPort),
    '--queuePort',
    String(ports.queuePort),
    '--tablePort',
    String(ports.tablePort),
  ];
  if (options.location) {
    mkdirSync(options.location, { recursive: true });
    args.push('--location', options.location);
  } else {
    args.push('--inMemoryPersistence');
  }
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`Azurite exited (${code ?? 'signal'}): ${stderr.trim()}`))),
  );
  await Promise.race([
    Promise.all([waitForPort(ports.blobPort), waitForPort(ports.tablePort), waitForPort(ports.queuePort)]),
    exited,
  ]);
  const base = 'http://127.0.0.1';
  return {
    ...ports,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${DEV_ACCOUNT};AccountKey=${DEV_KEY};` +
      `BlobEndpoint=${base}:${ports.blobPort}/${DEV_ACCOUNT};QueueEndpoint=${base}:${ports.queuePort}/${DEV_ACCOUNT};` +
      `TableEndpoint=${base}:${ports.tablePort}/${DEV_ACCOUNT};`,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
