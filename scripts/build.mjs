// Bundles the function app (an ES module and its chunks) and the local tools (one file each) with esbuild.
import { build, transform } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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
  sourcemap: true,
  logLevel: 'warning',
  // Supplied by the Azure Functions worker at run time (and by the local host's shim).
  external: ['@azure/functions-core'],
};

/** The local tools: one CommonJS file each. */
const toolBuild = {
  ...common,
  format: 'cjs',
  // Some SDK packages are bundled from their ES-module builds, which call createRequire(import.meta.url).
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: 'var __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
};

// The tools (npm workspaces under tools/) that serve or drive this app, bundled beside the app in dist/.
const tools = {
  host: 'tools/local-host/src/main.ts',
  sandbox: 'tools/sandbox/src/main.ts',
  bench: 'tools/bench/src/main.ts',
};

const sha256 = (text) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/**
 * The dashboard as one self-contained page (dist/dashboard.html): its script and styles inline, so it needs no CDN
 * or second request, and a Content-Security-Policy that allows exactly those two and calls to its own origin.
 */
async function buildDashboard() {
  const dir = path.join(root, 'src/dashboard');
  const script = await build({
    entryPoints: [path.join(dir, 'main.ts')],
    bundle: true,
    minify: true,
    format: 'iife',
    platform: 'browser',
    target: ['chrome120', 'edge120', 'firefox121', 'safari17'],
    write: false,
    logLevel: 'warning',
  });
  const js = script.outputFiles[0].text.trim();
  const css = (
    await transform(readFileSync(path.join(dir, 'styles.css'), 'utf8'), { loader: 'css', minify: true })
  ).code.trim();
  if (/<\/(script|style)/i.test(js + css))
    throw new Error('dashboard: the bundle contains a closing </script> or </style>');
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(js)}`,
    `style-src ${sha256(css)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  const page = readFileSync(path.join(dir, 'page.html'), 'utf8')
    .replace(/<!--CSP-->/, () => `<meta http-equiv="Content-Security-Policy" content="${csp}" />`)
    .replace(/<style>[\s\S]*?<\/style>/, () => `<style>${css}</style>`)
    .replace(/<script>[\s\S]*?<\/script>/, () => `<script>${js}</script>`);
  mkdirSync(path.join(root, 'dist'), { recursive: true });
  writeFileSync(path.join(root, 'dist/dashboard.html'), page);
}

const started = Date.now();
await buildDashboard();
// Chunks of an earlier build would otherwise pile up beside the new ones (their names carry a content hash).
rmSync(path.join(root, 'dist/chunks'), { recursive: true, force: true });
const appBuild = await build({
  ...common,
  // An ES module split into chunks: main.mjs holds what registering the functions needs, and each adapter with its SDK
  // is a chunk that its first import() loads (shared code, such as the domain's error classes, gets one chunk of its
  // own, so there is one copy of each). A cold start reads and parses only main.mjs and the few chunks it imports.
  format: 'esm',
  splitting: true,
  // Identifiers stay, so error names (`this.name = new.target.name`) and the function names in stack traces read as
  // in the source. Source maps are separate files, linked so that `node --enable-source-maps` maps stack traces to src/.
  minifyWhitespace: true,
  minifySyntax: true,
  // CommonJS packages bundled into an ES module still call require() (for node: modules, and for the worker's
  // @azure/functions-core), and the app reads the dashboard page beside itself. Node.js gives an ES module
  // import.meta.dirname and import.meta.filename (define replaces only free uses of __dirname, not a package's own).
  banner: {
    js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
  },
  define: { __dirname: 'import.meta.dirname', __filename: 'import.meta.filename' },
  stdin: { contents: functionsEntry(), resolveDir: root, sourcefile: 'app-entry.ts', loader: 'ts' },
  outdir: path.join(root, 'dist'),
  entryNames: 'main',
  chunkNames: 'chunks/[name]-[hash]',
  outExtension: { '.js': '.mjs' },
  metafile: true,
});
await Promise.all(
  Object.entries(tools).map(([name, entry]) =>
    build({ ...toolBuild, entryPoints: [path.join(root, entry)], outfile: path.join(root, `dist/${name}.js`) }),
  ),
);
const appFiles = Object.keys(appBuild.metafile.outputs).filter((file) => file.endsWith('.mjs'));
console.log(`built dist/ in ${Date.now() - started} ms (the app: main.mjs and ${appFiles.length - 1} chunks)`);
