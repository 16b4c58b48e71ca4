// `npm run serve`: the local Functions host for the app in the current folder (in place of `func start`).
// PORT (default 7071) and ROTATOR_LOCAL_FUNCTION_KEY (the key for `function`/`admin` endpoints) come from the
// environment. Listens on 127.0.0.1 only. Queue triggers read their connection (AzureWebJobsStorage, ...) from the
// environment and their settings from host.json `extensions.queues`; LOCAL_HOST_QUEUE_LEASE_SECONDS (local only:
// Azure fixes it at 600) shortens how long a received message stays invisible while its function runs.
import { describeFunctions, startLocalHost } from './server';

function portFromEnvironment(): number | undefined {
  const text = process.env.PORT;
  if (text === undefined || text === '') return undefined;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be a port number (0-65535), got "${text}".`);
  }
  return port;
}

async function main(): Promise<void> {
  const host = await startLocalHost({
    appDir: process.cwd(),
    port: portFromEnvironment(),
    functionKey: process.env.ROTATOR_LOCAL_FUNCTION_KEY,
  });
  console.log(['', ...describeFunctions(host.functions, host.url)].join('\n'));

  const shutDown = (signal: NodeJS.Signals): void => {
    console.log(`${signal}: application is shutting down...`);
    host.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`Shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutDown);
  process.once('SIGTERM', shutDown);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
