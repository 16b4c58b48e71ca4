// The deployment artifact: scripts/package.mjs output is self-contained (no install step) and, loaded the way
// the Functions worker loads it, registers every function with the triggers the infrastructure relies on.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { SourceMap } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { init as initModuleLexer, parse as parseModule } from 'es-module-lexer';
import { unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedApp } from '@cmk-rotator/local-host/registry';
import { loadFunctionApp } from '@cmk-rotator/local-host/registry';

const ZIP = 'dist/cmk-rotator.zip';
const STAGED = 'dist/app';
/** What every package holds besides the chunks of the app (dist/chunks/, whose names carry content hashes). */
const FIXED_FILES = ['dashboard.html', 'host.json', 'main.mjs', 'main.mjs.map', 'package.json'];
const packageFiles = () => [...FIXED_FILES, ...readdirSync('dist/chunks').map((name) => `chunks/${name}`)].sort();

/** What the app must register (the Event Grid subscription and the docs depend on these). */
const EXPECTED_FUNCTIONS = [
  { name: 'keyVaultEvents', triggerType: 'eventGridTrigger' },
  { name: 'rotateKey', triggerType: 'httpTrigger', methods: ['POST'], route: 'keys/rotate', authLevel: 'function' },
  { name: 'syncKey', triggerType: 'httpTrigger', methods: ['POST'], route: 'keys/sync', authLevel: 'function' },
  { name: 'keyStatus', triggerType: 'httpTrigger', methods: ['GET'], route: 'keys/status', authLevel: 'function' },
  { name: 'rotationHistory', triggerType: 'httpTrigger', methods: ['GET'], route: 'rotations', authLevel: 'function' },
  { name: 'reconcile', triggerType: 'timerTrigger' },
  { name: 'reconcileNow', triggerType: 'httpTrigger', methods: ['POST'], route: 'reconcile', authLevel: 'function' },
  { name: 'health', triggerType: 'httpTrigger', methods: ['GET'], route: 'health', authLevel: 'anonymous' },
  { name: 'jobStatus', triggerType: 'httpTrigger', methods: ['GET'], route: 'jobs/{id}', authLevel: 'function' },
  {
    name: 'retireVersions',
    triggerType: 'httpTrigger',
    methods: ['POST'],
    route: 'keys/retire',
    authLevel: 'function',
  },
  { name: 'keyImpact', triggerType: 'httpTrigger', methods: ['GET'], route: 'keys/impact', authLevel: 'function' },
  { name: 'revokeKey', triggerType: 'httpTrigger', methods: ['POST'], route: 'keys/revoke', authLevel: 'function' },
  { name: 'restoreKey', triggerType: 'httpTrigger', methods: ['POST'], route: 'keys/restore', authLevel: 'function' },
  { name: 'hubSteps', triggerType: 'queueTrigger' },
  { name: 'hubStepsPoison', triggerType: 'queueTrigger' },
  { name: 'listKeys', triggerType: 'httpTrigger', methods: ['GET'], route: 'keys', authLevel: 'function' },
  { name: 'dashboard', triggerType: 'httpTrigger', methods: ['GET'], route: 'dashboard', authLevel: 'function' },
];

/** The settings the app needs to start, as the template sets them in Azure (values are placeholders). */
const APP_SETTINGS = {
  ROTATOR_ALLOWED_VAULTS: 'https://demo.vault.azure.net',
  ROTATOR_SUBSCRIPTION_IDS: '00000000-0000-0000-0000-000000000001',
  AzureWebJobsStorage__accountName: 'stdemo',
  AzureWebJobsStorage__credential: 'managedidentity',
  ROTATOR_RECONCILE_SCHEDULE: '0 30 */2 * * *',
};

const node = (script: string, cwd = process.cwd()): string =>
  execFileSync(process.execPath, [script], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

let unzipped: Record<string, Uint8Array>;
let appDir: string;

beforeAll(() => {
  // `npm test` builds first; build here only when run on a fresh checkout.
  if (!existsSync('dist/main.mjs')) node('scripts/build.mjs');
  node('scripts/package.mjs');
  unzipped = unzipSync(readFileSync(ZIP));
  // Outside the repository, so nothing can be resolved from its node_modules.
  appDir = mkdtempSync(path.join(os.tmpdir(), 'cmk-rotator-package-'));
  for (const [name, content] of Object.entries(unzipped)) {
    mkdirSync(path.dirname(path.join(appDir, name)), { recursive: true });
    writeFileSync(path.join(appDir, name), content);
  }
}, 60_000);

afterAll(() => {
  if (appDir) rmSync(appDir, { recursive: true, force: true });
});

describe('dist/cmk-rotator.zip', () => {
  it('holds the bundle and its chunks with their source maps, host.json and a production package.json, and no node_modules', () => {
    expect(Object.keys(unzipped).sort()).toEqual(packageFiles());
    expect(Object.keys(unzipped).filter((name) => name.startsWith('chunks/')).length).toBeGreaterThan(0);
    expect(Buffer.from(unzipped['host.json']!).equals(readFileSync('host.json'))).toBe(true);

    const manifest = JSON.parse(Buffer.from(unzipped['package.json']!).toString('utf8')) as Record<string, unknown>;
    const project = JSON.parse(readFileSync('package.json', 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({
      name: project.name,
      version: project.version,
      main: 'main.mjs',
      dependencies: {},
    });
    expect(manifest).not.toHaveProperty('devDependencies');
    expect(manifest).not.toHaveProperty('scripts');
  });

  it('has the same files azd deploys from dist/app', () => {
    const staged = readdirSync(STAGED, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => path.relative(STAGED, path.join(entry.parentPath, entry.name)));
    expect(staged.sort()).toEqual(packageFiles());
    for (const name of packageFiles()) {
      expect(Buffer.from(unzipped[name]!).equals(readFileSync(path.join(STAGED, name))), name).toBe(true);
    }
  });

  it('has a source map that maps the minified bundle back to the sources (for stack traces)', () => {
    const bundle = Buffer.from(unzipped['main.mjs']!).toString('utf8');
    const map = new SourceMap(JSON.parse(Buffer.from(unzipped['main.mjs.map']!).toString('utf8')) as never);
    const at = bundle.indexOf('function healthHandler(');
    const before = bundle.slice(0, at).split('\n');
    const entry = map.findEntry(before.length - 1, before.at(-1)!.length);
    expect(bundle.endsWith('//# sourceMappingURL=main.mjs.map\n')).toBe(true);
    expect(entry).toMatchObject({ originalSource: expect.stringMatching(/functions\/health\.ts$/) });
  });

  it('holds every module the app imports, statically or on first use', async () => {
    await initModuleLexer;
    const modules = Object.keys(unzipped).filter((name) => name.endsWith('.mjs'));
    const missing = modules.flatMap((name) => {
      const [imports] = parseModule(Buffer.from(unzipped[name]!).toString('utf8'));
      return imports
        .map((i) => i.n)
        .filter((specifier) => specifier?.startsWith('.'))
        .map((specifier) => path.posix.join(path.posix.dirname(name), specifier!))
        .filter((target) => !(target in unzipped));
    });
    expect(modules.length).toBeGreaterThan(2);
    expect(missing).toEqual([]);
  });

  it('is byte-for-byte the same when packaged again', () => {
    const first = readFileSync(ZIP);
    node('scripts/package.mjs');
    expect(readFileSync(ZIP).equals(first)).toBe(true);
  });
});

describe('the packaged app', () => {
  let app: LoadedApp;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    for (const [name, value] of Object.entries(APP_SETTINGS)) {
      saved[name] = process.env[name];
      process.env[name] = value;
    }
    app = await loadFunctionApp(appDir, { log: () => undefined });
  }, 30_000);

  afterAll(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('loads with no install step and registers every function with its trigger', () => {
    const registered = app.functions.map((f) => ({
      name: f.name,
      triggerType: f.triggerType,
      ...(f.methods ? { methods: f.methods } : {}),
      ...(f.route ? { route: f.route } : {}),
      ...(f.authLevel ? { authLevel: f.authLevel } : {}),
    }));
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect(registered.sort(byName)).toEqual([...EXPECTED_FUNCTIONS].sort(byName));
  });

  it('takes the reconcile schedule from ROTATOR_RECONCILE_SCHEDULE, the setting the template sets', () => {
    const reconcile = app.functions.find((f) => f.name === 'reconcile');
    // Either resolved by the app at start-up or left to the host as a %setting% expression.
    expect(['%ROTATOR_RECONCILE_SCHEDULE%', APP_SETTINGS.ROTATOR_RECONCILE_SCHEDULE]).toContain(reconcile?.schedule);
  });
});

describe('scripts/package.mjs', () => {
  it('refuses a bundle that still imports a package at run time', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'cmk-rotator-unbundled-'));
    try {
      mkdirSync(path.join(root, 'scripts'));
      mkdirSync(path.join(root, 'dist'));
      copyFileSync('scripts/package.mjs', path.join(root, 'scripts/package.mjs'));
      copyFileSync('package.json', path.join(root, 'package.json'));
      copyFileSync('host.json', path.join(root, 'host.json'));
      symlinkSync(path.resolve('node_modules'), path.join(root, 'node_modules'), 'dir');
      mkdirSync(path.join(root, 'dist/chunks'));
      writeFileSync(
        path.join(root, 'dist/main.mjs'),
        'import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);\nrequire("@azure/functions-core");\nawait import("./chunks/tables.mjs");\n',
      );
      writeFileSync(path.join(root, 'dist/main.mjs.map'), '{}');
      writeFileSync(path.join(root, 'dist/chunks/tables.mjs'), 'import * as z from "zod";\nexport { z };\n');

      const result = spawnSync(process.execPath, ['scripts/package.mjs'], { cwd: root, encoding: 'utf8' });
      expect(result.status).toBe(1);
      expect(result.stderr).toContain('dist/chunks/tables.mjs still loads zod at run time');
      expect(existsSync(path.join(root, 'dist/cmk-rotator.zip'))).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
