// Packages the built app (npm run build) for Azure Functions: stages dist/app/ (what azd deploys) and zips the same
// files into dist/cmk-rotator.zip (for `az functionapp deployment source config-zip`).
// The bundle carries every dependency, so the package has no node_modules and needs no install; the only module
// it leaves to run time is @azure/functions-core, which the Azure Functions Node.js worker provides.
import { init as initModuleLexer, parse as parseModule } from 'es-module-lexer';
import { zipSync } from 'fflate';
import { Buffer } from 'node:buffer';
import console from 'node:console';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bundlePath = path.join(root, 'dist/main.mjs');
const chunksDir = path.join(root, 'dist/chunks');
const stageDir = path.join(root, 'dist/app');
const zipPath = path.join(root, 'dist/cmk-rotator.zip');
const providedByWorker = new Set(['@azure/functions-core']);
// Fixed timestamps make the zip depend on its content only.
const zipTime = new Date('2020-01-01T00:00:00Z');

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(1);
}

/** Bare module names the code still requires or imports at run time, other than Node's own. */
function unbundledModules(code) {
  const builtins = new Set(builtinModules);
  const [imports] = parseModule(code);
  const required = [...code.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)].map((match) => match[1]);
  const names = new Set();
  for (const name of [...imports.map((i) => i.n).filter((n) => n !== undefined), ...required]) {
    if (name.startsWith('node:') || name.startsWith('.') || builtins.has(name) || builtins.has(name.split('/')[0]))
      continue;
    names.add(name);
  }
  return [...names].sort();
}

await initModuleLexer;
if (!existsSync(bundlePath)) fail('dist/main.mjs is missing: run `npm run build` first (or `npm run package`).');
/** The app: main.mjs and the chunks it imports, each with its source map. Package path -> content. */
const code = {
  'main.mjs': readFileSync(bundlePath),
  'main.mjs.map': readFileSync(`${bundlePath}.map`),
};
for (const name of existsSync(chunksDir) ? readdirSync(chunksDir).sort() : []) {
  code[`chunks/${name}`] = readFileSync(path.join(chunksDir, name));
}
for (const [name, content] of Object.entries(code)) {
  if (!name.endsWith('.mjs')) continue;
  const leftOver = unbundledModules(content.toString('utf8')).filter((module) => !providedByWorker.has(module));
  if (leftOver.length > 0) {
    fail(`dist/${name} still loads ${leftOver.join(', ')} at run time; bundle them (the package has no node_modules).`);
  }
}

const project = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const productionManifest = {
  name: project.name,
  version: project.version,
  description: project.description,
  license: project.license,
  private: true,
  main: 'main.mjs',
  engines: project.engines,
  dependencies: {},
};

/** Package path -> content. */
const files = {
  'host.json': readFileSync(path.join(root, 'host.json')),
  'package.json': Buffer.from(`${JSON.stringify(productionManifest, null, 2)}\n`),
  ...code,
  // The operator dashboard, read by functions/dashboard.ts from beside main.mjs.
  'dashboard.html': readFileSync(path.join(root, 'dist/dashboard.html')),
};

rmSync(stageDir, { recursive: true, force: true });
mkdirSync(stageDir, { recursive: true });
for (const [name, content] of Object.entries(files)) {
  mkdirSync(path.dirname(path.join(stageDir, name)), { recursive: true });
  writeFileSync(path.join(stageDir, name), content);
}

const entries = Object.fromEntries(
  Object.entries(files).map(([name, content]) => [name, [new Uint8Array(content), { mtime: zipTime }]]),
);
writeFileSync(zipPath, zipSync(entries, { level: 9 }));

const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
for (const [name, content] of Object.entries(files)) console.log(`  ${name.padEnd(12)} ${kib(content.length)}`);
console.log(
  `packaged ${path.relative(root, zipPath)} (${kib(statSync(zipPath).size)}) and ${path.relative(root, stageDir)}/`,
);
