// Starts Azurite (the Storage emulator from npm) as a child process for the audit log, jobs and dead letters.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { assertPortFree } from './tcpPorts';

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
  // A port left out is 0: Azurite listens on one the system gives it and says which, so no port is picked ahead and
  // released for another process to take first.
  const requested = {
    blobPort: options.blobPort ?? 0,
    queuePort: options.queuePort ?? 0,
    tablePort: options.tablePort ?? 0,
  };
  for (const [name, port] of Object.entries(requested)) if (port) await assertPortFree(port, `Azurite ${name}`);
  const script = createRequire(__filename).resolve('azurite/dist/src/azurite.js');
  const args = [script, '--silent', '--skipApiVersionCheck', '--disableTelemetry', '--loose'];
  for (const [name, port] of Object.entries(requested)) args.push(`--${name}`, String(port));
  if (options.location) {
    mkdirSync(options.location, { recursive: true });
    args.push('--location', options.location);
  } else {
    args.push('--inMemoryPersistence');
  }
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`Azurite exited (${code ?? 'signal'}): ${stderr.trim()}`))),
  );
  const listening = new Promise<typeof requested>((resolve, reject) => {
    // Unref'd: it must not keep a process alive whose Azurite failed, and firing after the ports are known does nothing.
    setTimeout(() => reject(new Error(`Azurite did not listen within 30 s: ${stderr.trim()}`)), 30_000).unref();
    const found: Partial<typeof requested> = {};
    createInterface({ input: child.stdout! }).on('line', (line) => {
      // "Azurite Blob service is successfully listening at http://127.0.0.1:10000"
      const match = /Azurite (Blob|Queue|Table) service is successfully listening at \S+:(\d+)/.exec(line);
      if (!match) return;
      found[`${match[1]!.toLowerCase() as 'blob' | 'queue' | 'table'}Port`] = Number(match[2]);
      if (Object.keys(found).length === 3) resolve(found as typeof requested);
    });
  });
  const ports = await Promise.race([listening, exited]);
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
