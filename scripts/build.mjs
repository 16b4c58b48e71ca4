// Bundles the function app and the local tools with esbuild (fast module load, one file each).
import { build } from 'esbuild';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every file in functions/ is a registration; the app entry imports them all, so there is no list to keep. */
function functionsEntry() {
  const files = readdirSync(path.join(root, 'functions'))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .sort();
  return files.map((f) => `import './functions/${f.slice(0, -3)}';`).join('\n');
}

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
  // Supplied by the Azure Functions worker at run time (and by the local host's shim).
  external: ['@azure/functions-core'],
  // Some SDK packages are bundled from their ES-module builds, which call createRequire(import.meta.url).
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: 'var __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
};

const tools = {
  host: 'host/main.ts',
  emulators: 'emulators/main.ts',
  sandbox: 'scripts/sandbox.ts',
  bench: 'bench/main.ts',
};

const started = Date.now();
await build({
  ...common,
  // What every cold start reads and parses, so it is as small as it can be without renaming anything: identifiers stay,
  // so error names (`this.name = new.target.name`) and the function names in stack traces read as in the source.
  // Parsing the bundle is most of its load time; renaming would save bytes, not time. The source map is a separate
  // file (main.js.map, deployed alongside), linked so that `node --enable-source-maps` maps stack traces to src/.
  minifyWhitespace: true,
  minifySyntax: true,
  stdin: { contents: functionsEntry(), resolveDir: root, sourcefile: 'app-entry.ts', loader: 'ts' },
  outfile: path.join(root, 'dist/main.js'),
});
await Promise.all(
  Object.entries(tools)
    .filter(([, entry]) => existsSync(path.join(root, entry)))
    .map(([name, entry]) =>
      build({ ...common, entryPoints: [path.join(root, entry)], outfile: path.join(root, `dist/${name}.js`) }),
    ),
);
console.log(`built dist/ in ${Date.now() - started} ms`);
