// `npm start`: the whole story on one machine. Starts the local Azure (Azurite, managed identity, Key Vault, ARM,
// Event Grid), the function app's local host, seeds a demo, lets a key near its expiry and narrates what the
// service does: event received → version created → each hub moved → outcomes recorded. Then it stays up for you
// to try the routes; Ctrl-C stops everything it started. `--once` ends after the story (for CI and tests).
// `--revoke-drill` adds the owner's emergency brake: revoke preview → revoke → hubs inaccessible → restore → back.
import { spawn } from 'node:child_process';
import { appendFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { AccessToken } from '@azure/core-auth';
import { KeyClient } from '@azure/keyvault-keys';
import { issueToken } from '@cmk-rotator/emulators/auth';
import { startFunctionHost } from '@cmk-rotator/local-host/functionHost';
import type { HostLogLine, RunningFunctionHost } from '@cmk-rotator/local-host/functionHost';
import { assertPortFree, freePort } from '@cmk-rotator/emulators/tcpPorts';
import { cmkHub } from '@cmk-rotator/emulators/arm';
import { OUTCOME_TOPIC, startStack } from '@cmk-rotator/emulators/stack';
import type { RunningStack, StackPorts } from '@cmk-rotator/emulators/stack';
import { ensureDevCertificate } from '@cmk-rotator/emulators/tls';

const VAULT = 'demo';
const VAULT_URL = `https://${VAULT}.vault.azure.net`;
const KEY = 'hub-cmk';
const SUBSCRIPTIONS = { west: '11111111-1111-1111-1111-111111111111', east: '22222222-2222-2222-2222-222222222222' };
const HUB_IDENTITY = `/subscriptions/${SUBSCRIPTIONS.west}/resourceGroups/rg-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hub-cmk-reader`;
const DEMO_HUBS = [
  { subscriptionId: SUBSCRIPTIONS.west, resourceGroupName: 'rg-iot-weu', name: 'hub-weu-factory', key: KEY },
  { subscriptionId: SUBSCRIPTIONS.west, resourceGroupName: 'rg-iot-weu', name: 'hub-weu-fleet', key: KEY },
  { subscriptionId: SUBSCRIPTIONS.west, resourceGroupName: 'rg-iot-weu', name: 'hub-weu-labs', key: KEY },
  { subscriptionId: SUBSCRIPTIONS.east, resourceGroupName: 'rg-iot-eus', name: 'hub-eus-retail', key: KEY },
  { subscriptionId: SUBSCRIPTIONS.east, resourceGroupName: 'rg-iot-eus', name: 'hub-eus-energy', key: KEY },
  {
    subscriptionId: SUBSCRIPTIONS.east,
    resourceGroupName: 'rg-iot-eus',
    name: 'hub-eus-telemetry',
    key: 'telemetry-cmk',
  },
];
const MOVING = DEMO_HUBS.filter((h) => h.key === KEY);
const STORY_TIMEOUT_MS = 90_000;

const once = process.argv.includes('--once');
const revokeDrillWanted = process.argv.includes('--revoke-drill');
const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: number) => (text: string) => (color ? `\u001b[${code}m${text}\u001b[0m` : text);
const [bold, dim, green, red, cyan, yellow] = [1, 2, 32, 31, 36, 33].map(paint) as [
  (t: string) => string,
  (t: string) => string,
  (t: string) => string,
  (t: string) => string,
  (t: string) => string,
  (t: string) => string,
];
const started = Date.now();
const say = (line: string) =>
  console.log(`${dim(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`)} ${line}`);
/** Log fields are JSON values; the story prints the ones that are text. */
const text = (value: unknown) => (typeof value === 'string' || typeof value === 'number' ? String(value) : '');
const short = (id: unknown) => text(id).split('/').pop()?.slice(0, 8) ?? '';

/**
 * Ports: SANDBOX_BASE_PORT (default 7071) for the app, the next eight for the emulators. With 0, the in-process
 * emulators listen on ports the system gives them as they start: a port picked ahead and released can be taken by
 * another process before it is listened on. Only the child processes (Azurite, the function host), which need their
 * numbers up front, get ports picked for them, just before they start.
 */
async function choosePorts(): Promise<{ host: number; stack: Partial<StackPorts> }> {
  const raw = process.env.SANDBOX_BASE_PORT ?? '7071';
  const base = Number(raw);
  if (!Number.isInteger(base) || base < 0 || base > 65_526) {
    throw new Error(`SANDBOX_BASE_PORT must be 0 or a port number up to 65526 (got "${raw}").`);
  }
  if (base === 0) return { host: await freePort(), stack: {} };
  const stack: StackPorts = {
    proxy: base + 1,
    identity: base + 2,
    keyVault: base + 3,
    arm: base + 4,
    eventGrid: base + 5,
    blob: base + 6,
    queue: base + 7,
    table: base + 8,
  };
  await assertPortFree(base, 'function host (SANDBOX_BASE_PORT)');
  return { host: base, stack };
}

async function seed(stack: RunningStack, keys: KeyClient): Promise<{ v1: string }> {
  const now = stack.clock.now().getTime();
  // The rotation policy is what a compliance team sets: versions live 90 days, warn 30 days before expiry.
  const policy = { expiresIn: 'P90D', lifetimeActions: [{ action: 'Notify' as const, timeBeforeExpiry: 'P30D' }] };
  const key = await keys.createRsaKey(KEY, {
    keySize: 3072,
    keyOps: ['wrapKey', 'unwrapKey'],
    expiresOn: new Date(now + 31 * 86_400_000),
    tags: { owner: 'platform-security' },
  });
  await keys.updateKeyRotationPolicy(KEY, policy);
  const other = await keys.createRsaKey('telemetry-cmk', {
    keySize: 2048,
    keyOps: ['wrapKey', 'unwrapKey'],
    expiresOn: new Date(now + 365 * 86_400_000),
  });
  // The keys' own KeyNewVersionCreated events come and go first: hubs seeded meanwhile would make them jobs of their
  // own (every hub already current), which is true but no part of the story.
  await stack.eventGrid.idle();
  for (const hub of DEMO_HUBS) {
    await stack.arm.seedHub({
      subscriptionId: hub.subscriptionId,
      resourceGroupName: hub.resourceGroupName,
      name: hub.name,
      hub: cmkHub({
        keyIdentifier: hub.key === KEY ? key.id! : other.id!,
        identity: HUB_IDENTITY,
        location: hub.subscriptionId === SUBSCRIPTIONS.west ? 'westeurope' : 'eastus',
        tags: { team: 'iot', costCenter: '4711' },
        capacity: 2,
        properties: { ipFilterRules: [{ filterName: 'plant-network', action: 'Accept', ipMask: '10.20.0.0/16' }] },
      }),
    });
  }
  return { v1: key.id! };
}

/** Narrates from the app's own structured logs and the outcome topic; resolves when every demo hub moved. */
function narrate(stack: RunningStack, host: RunningFunctionHost): Promise<void> {
  const moved = new Set<string>();
  const updating = new Set<string>();
  let recorded = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`The story did not complete within ${STORY_TIMEOUT_MS / 1000} s.`)),
      STORY_TIMEOUT_MS,
    );
    const progress = () => `${cyan(`[${moved.size}/${MOVING.length} hubs]`)}`;
    const finish = () => {
      if (moved.size === MOVING.length && recorded >= MOVING.length + 1) {
        clearTimeout(timer);
        unsubscribeLog();
        unsubscribeOutcomes();
        resolve();
      }
    };
    const unsubscribeLog = host.onLog((line: HostLogLine) => {
      const f = line.fields;
      switch (line.event) {
        case 'event.received':
          say(
            `${yellow('event')}    ${String(f.eventType)} for ${String(f.key)} version ${short(f.version)} reached the function`,
          );
          break;
        case 'key.rotated':
          say(
            `${green('rotated')}  new version ${bold(short(f.version))} of ${String(f.key)} (expires ${String(f.expiresOn).slice(0, 10)})`,
          );
          break;
        case 'job.planned':
          say(
            Number(f.started) > 0
              ? `${yellow('planned')}  job ${String(f.jobId)}: ${String(f.hubs)} hubs, ${String(f.started)} step messages queued (hub-steps); the event is answered`
              : `${yellow('joined')}   job ${String(f.jobId)} is already planned: nothing new to queue; the event is answered`,
          );
          break;
        case 'step.taken': {
          const name = String(f.hub).split('/').pop()!;
          if (f.state === 'updating' && f.waiting === 'operation' && !updating.has(name)) {
            updating.add(name);
            say(
              `${yellow('step')}     ${name}: read, PUT accepted (If-Match); ARM's update runs, next look in ${Math.round(Number(f.nextInMs) / 1000)} s`,
            );
          } else if (f.waiting === 'throttled' || f.waiting === 'backoff') {
            say(
              `${yellow('waiting')}  ${name}: ${String(f.waiting)}, next step in ${Math.round(Number(f.nextInMs) / 1000)} s`,
            );
          }
          break;
        }
        case 'hub.moved': {
          const name = String(f.hub).split('/').pop()!;
          moved.add(name);
          say(
            `${green('moved')}    ${progress()} ${name}: ${short(String(f.from))} → ${short(String(f.to))} in ${String(f.durationMs)} ms`,
          );
          break;
        }
        case 'hub.failed':
          say(`${red('failed')}   ${String(f.hub).split('/').pop()}: ${text(f.errorCode)} ${text(f.reason)}`);
          break;
        case 'rotation.failed':
          say(`${red('failed')}   ${String(f.errorCode)}: ${String(f.message)}`);
          break;
      }
      finish();
    });
    const unsubscribeOutcomes = stack.eventGrid.onEvent((event) => {
      if (event.topicName !== OUTCOME_TOPIC) return;
      recorded++;
      say(
        `${cyan('outcome')}  ${event.type} → ${String(event.subject).split('/').pop()} (Event Grid topic ${OUTCOME_TOPIC})`,
      );
      finish();
    });
  });
}

/** The dashboard with the local function key in `?code=`, as Azure Functions accepts it (the page then drops it from the address bar). */
const dashboardUrl = (host: RunningFunctionHost, functionKey: string) =>
  `${host.url}/api/dashboard?code=${encodeURIComponent(functionKey)}`;

function tryItOut(host: RunningFunctionHost, stack: RunningStack, functionKey: string, dataDir: string): string {
  const keyId = encodeURIComponent(`${VAULT_URL}/keys/${KEY}`);
  const k = `-H 'x-functions-key: ${functionKey}'`;
  // curl -d says form-urlencoded unless told otherwise, and the host refuses non-JSON bodies on operator routes.
  const kj = `${k} -H 'content-type: application/json'`;
  const ca = `--cacert ${path.relative(process.cwd(), path.join(dataDir, 'tls', 'emulator-ca.pem'))}`;
  return [
    bold('Try it:'),
    `  dashboard   ${dashboardUrl(host, functionKey)}`,
    `  status      curl -s ${k} '${host.url}/api/keys/status?keyId=${keyId}'`,
    `  history     curl -s ${k} '${host.url}/api/rotations?keyId=${keyId}&limit=20'`,
    `  dry run     curl -s ${kj} -X POST ${host.url}/api/keys/rotate -d '{"keyId":"${VAULT_URL}/keys/${KEY}","dryRun":true}'`,
    `  rotate now  curl -s ${kj} -X POST ${host.url}/api/keys/rotate -d '{"keyId":"${VAULT_URL}/keys/${KEY}","reason":"drill"}'`,
    `  sync        curl -s ${kj} -X POST ${host.url}/api/keys/sync -d '{"keyId":"${VAULT_URL}/keys/${KEY}"}'`,
    `  job         curl -s ${k} '${host.url}/api/jobs/<jobId from rotate, sync or status>'`,
    `  retire      curl -s ${kj} -X POST ${host.url}/api/keys/retire -d '{"keyId":"${VAULT_URL}/keys/${KEY}","dryRun":true}'`,
    `  impact      curl -s ${k} '${host.url}/api/keys/impact?keyId=${keyId}'`,
    `  revoke      curl -s ${kj} -X POST ${host.url}/api/keys/revoke -d '{"keyId":"${VAULT_URL}/keys/${KEY}"}'  (a preview)`,
    `  restore     curl -s ${kj} -X POST ${host.url}/api/keys/restore -d '{"keyId":"${VAULT_URL}/keys/${KEY}","confirm":"${KEY}"}'`,
    `  reconcile   curl -s ${k} -X POST ${host.url}/api/reconcile`,
    `  health      curl -s ${host.url}/api/health`,
    `  +30 days    curl -s ${ca} -X POST https://127.0.0.1:${stack.keyVault.port}/_admin/clock/advance -d '{"seconds":2592000}'`,
    `  outcomes    curl -s ${ca} https://127.0.0.1:${stack.eventGrid.port}/_admin/topics/${OUTCOME_TOPIC}/events`,
    `  deliveries  curl -s ${ca} https://127.0.0.1:${stack.eventGrid.port}/_admin/deliveries`,
    `  dead letters curl -s ${ca} https://127.0.0.1:${stack.eventGrid.port}/_admin/dead-letters`,
    `  ARM log     curl -s ${ca} https://127.0.0.1:${stack.arm.port}/_admin/requests`,
    dim(
      `  Dead letters land in ${path.relative(process.cwd(), path.join(dataDir, 'dead-letters'))}/; the app's log in ${path.relative(process.cwd(), path.join(dataDir, 'host.log'))}.`,
    ),
  ].join('\n');
}

/** What the drill reads from the lifecycle routes' answers (an error answer has only `error`). */
interface LifecycleAnswer {
  versions: string[];
  hubs: unknown[];
  error?: { message?: string };
}

type Api = (method: string, route: string, body?: unknown) => Promise<{ status: number; body: LifecycleAnswer }>;

function apiOf(host: RunningFunctionHost, functionKey: string): Api {
  return async (method, route, body) => {
    const response = await fetch(`${host.url}${route}`, {
      method,
      headers: { 'x-functions-key': functionKey, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const answer = (await response.json()) as Partial<LifecycleAnswer>;
    return { status: response.status, body: { versions: [], hubs: [], ...answer } };
  };
}

/**
 * The revocation drill: what a revoke would cut off, the revoke itself (confirmed with the key's name), the hubs
 * going dark in ARM (state Inaccessible, data unreadable), then the restore and the hubs reading their data again.
 */
async function revokeDrill(stack: RunningStack, api: Api): Promise<boolean> {
  const keyId = `${VAULT_URL}/keys/${KEY}`;
  const look = async () =>
    Promise.all(
      MOVING.map(async (h) => ({
        name: h.name,
        state: String((stack.arm.getHub(h)?.properties as { state?: unknown } | undefined)?.state),
        readable: (await stack.arm.checkHubData(h)).readable,
      })),
    );
  const show = (views: { name: string; state: string; readable: boolean }[]) =>
    views.map((v) => `${v.name} ${v.readable ? green(v.state) : red(`${v.state}, data unreadable`)}`).join('; ');
  say(bold('Revocation drill: the key owner pulls the emergency brake...'));
  const impact = await api('GET', `/api/keys/impact?keyId=${encodeURIComponent(keyId)}`);
  say(`${yellow('impact')}   ${impact.body.hubs.length} hubs would lose their data if ${KEY} were disabled`);
  const preview = await api('POST', '/api/keys/revoke', { keyId });
  say(
    `${yellow('preview')}  revoke (dryRun, the default) would disable ${preview.body.versions.length} version(s) and cut off ${preview.body.hubs.length} hubs; nothing changed`,
  );
  const refused = await api('POST', '/api/keys/revoke', { keyId, dryRun: false });
  say(`${yellow('refused')}  without the key's name: ${refused.status} ${text(refused.body.error?.message)}`);
  const revoked = await api('POST', '/api/keys/revoke', { keyId, dryRun: false, confirm: KEY });
  say(`${red('revoked')}  ${revoked.status}: disabled ${revoked.body.versions.map(short).join(', ')}`);
  const dark = await look();
  say(`${red('ARM')}      ${show(dark)}`);
  const restored = await api('POST', '/api/keys/restore', { keyId, confirm: KEY });
  say(`${green('restored')} ${restored.status}: re-enabled ${restored.body.versions.map(short).join(', ')}`);
  const back = await look();
  say(`${green('ARM')}      ${show(back)}`);
  const ok =
    revoked.status === 200 &&
    refused.status === 400 &&
    dark.every((v) => !v.readable && v.state === 'Inaccessible') &&
    back.every((v) => v.readable && v.state === 'Active');
  say(
    ok
      ? green(bold('Drill complete: the hubs went dark on revoke and came back on restore.'))
      : red(bold('Drill incomplete: see above.')),
  );
  return ok;
}

/**
 * Node reads NODE_EXTRA_CA_CERTS only at start-up, so the sandbox runs itself again trusting the emulators' CA
 * (in addition to whatever bundle it was given).
 */
function relaunchTrusting(trustBundlePath: string): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: trustBundlePath },
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)));
}

async function main(): Promise<number> {
  const dataDir = path.resolve(process.env.SANDBOX_DATA_DIR || '.data/sandbox');
  const { trustBundlePath } = ensureDevCertificate(path.join(dataDir, 'tls'));
  if (process.env.NODE_EXTRA_CA_CERTS !== trustBundlePath) return relaunchTrusting(trustBundlePath);
  // A fresh demo every time (the certificate is kept, so curl's --cacert stays valid).
  for (const entry of ['azurite', 'keyvault.json', 'dead-letters', 'host.log']) {
    rmSync(path.join(dataDir, entry), { recursive: true, force: true });
  }
  const ports = await choosePorts();
  say(bold('Starting the local Azure: Azurite, managed identity, Key Vault, ARM and Event Grid emulators...'));
  const stack = await startStack({
    dataDir,
    persistent: true,
    ports: ports.stack,
    retrySchedule: [1000, 2000, 5000, 10_000],
    // Hub updates take minutes in Azure; a few seconds here keep the story short while showing the wait steps.
    asyncOperationDelayMs: 4000,
    retryAfterSeconds: 1,
  });
  let host: RunningFunctionHost | undefined;
  const stop = async () => {
    await host?.stop().catch(() => undefined);
    await stack.close();
  };
  try {
    const functionKey = process.env.ROTATOR_LOCAL_FUNCTION_KEY || 'local-sandbox-key';
    host = await startFunctionHost({
      port: ports.host,
      env: stack.environment({
        ...process.env,
        ROTATOR_ALLOWED_VAULTS: VAULT_URL,
        ROTATOR_SUBSCRIPTION_IDS: Object.values(SUBSCRIPTIONS).join(','),
        ROTATOR_LOCAL_FUNCTION_KEY: functionKey,
      }),
      echo: (line) => appendFileSync(path.join(dataDir, 'host.log'), `${line}\n`),
    });
    say(`function app serving at ${bold(host.url)} (the local host, as ${bold('npm run serve')} runs it)`);
    say(`dashboard: ${bold(dashboardUrl(host, functionKey))} (open it now to watch the story live)`);
    await stack.eventGrid.subscribe({
      name: 'keyvault-to-rotator',
      endpointUrl: `${host.url}/runtime/webhooks/eventgrid?functionName=keyVaultEvents`,
      eventTypes: [
        'Microsoft.KeyVault.KeyNearExpiry',
        'Microsoft.KeyVault.KeyExpired',
        'Microsoft.KeyVault.KeyNewVersionCreated',
      ],
      schema: 'EventGridSchema',
    });
    say('Event Grid subscription from the vault to the function validated (handshake answered)');

    const keys = new KeyClient(
      VAULT_URL,
      {
        getToken: (scopes): Promise<AccessToken> =>
          Promise.resolve({
            token: issueToken(String(Array.isArray(scopes) ? scopes[0] : scopes).replace(/\/\.default$/, '')),
            expiresOnTimestamp: Date.now() + 3_600_000,
          }),
      },
      { proxyOptions: { host: 'http://127.0.0.1', port: stack.proxy.port } },
    );
    const { v1 } = await seed(stack, keys);
    await stack.eventGrid.idle();
    say(
      `demo seeded: vault ${bold(VAULT_URL)}, key ${bold(KEY)} version ${short(v1)} expiring in 31 days (notify 30 days before)`,
    );
    say(
      `  ${MOVING.length} hubs in 2 subscriptions use it; hub-eus-telemetry uses another key and must stay untouched`,
    );

    const story = narrate(stack, host);
    say(bold('A day passes (the emulator clock moves): the key enters its 30-day notify window...'));
    await stack.keyVault.admin.advanceClock(86_400 + 60);
    await story;
    await stack.eventGrid.idle();

    const readable = await Promise.all(MOVING.map((h) => stack.arm.checkHubData(h)));
    const bystander = stack.arm.getHub(DEMO_HUBS[5]!) as {
      properties: { encryption: { keyVaultProperties: { keyIdentifier: string }[] } };
    };
    const untouched = bystander.properties.encryption.keyVaultProperties[0]!.keyIdentifier.includes('/telemetry-cmk/');
    const history = (await (
      await fetch(`${host.url}/api/rotations?keyId=${encodeURIComponent(`${VAULT_URL}/keys/${KEY}`)}&limit=100`, {
        headers: { 'x-functions-key': functionKey },
      })
    ).json()) as { records: { result: string }[] };
    const tally = new Map<string, number>();
    for (const r of history.records) tally.set(r.result, (tally.get(r.result) ?? 0) + 1);
    say(
      `${cyan('audit')}    ${history.records.length} records in the audit table: ${[...tally].map(([k, n]) => `${n} ${k}`).join(', ')}`,
    );
    const storyOk = readable.every((r) => r.readable) && untouched;
    say(
      storyOk
        ? green(
            bold(`Story complete: every hub moved, every hub can still read its data, the other key's hub untouched.`),
          )
        : red(bold('Story incomplete: see above.')),
    );
    const ok = storyOk && (!revokeDrillWanted || (await revokeDrill(stack, apiOf(host, functionKey))));
    if (once) return ok ? 0 : 1;

    // Ctrl-C reaches the whole process group (and the relaunching parent forwards it too): the first signal starts
    // the shutdown, later ones are absorbed so the shutdown finishes. The handlers are in place before the line
    // that invites the signal is printed: a signal in between would kill the process with nothing stopped.
    const interrupted = new Promise<void>((resolve) => {
      process.on('SIGINT', () => resolve());
      process.on('SIGTERM', () => resolve());
    });
    console.log(`\n${tryItOut(host, stack, functionKey, dataDir)}\n\n${dim('Ctrl-C stops everything.')}`);
    await interrupted;
    say('stopping...');
    return 0;
  } finally {
    await stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(red(error instanceof Error ? error.message : String(error)));
    process.exit(1);
  },
);
