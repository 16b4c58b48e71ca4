// Finds a Bicep CLI and runs it: `bicep` on PATH, the one `az bicep` installed, or the NuGet package
// Azure.Bicep.CommandLine.<rid> restored through `dotnet` into .cache/bicep/ (nothing is fetched from anywhere but the
// package registry). Shared by scripts/infraCheck.mjs and the tests that compile the templates.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The version that compiles the committed infra/*.json; another version may emit different JSON. */
export const BICEP_VERSION = '0.49.2';

/** Entry templates: compiled to infra/<name>.json and deployed on their own. Modules are compiled into them. */
export const ENTRY_TEMPLATES = ['infra/main.bicep', 'infra/key-vault-events.bicep'];

const NUGET_RIDS = {
  'linux-x64': 'linux-x64',
  'linux-arm64': 'linux-arm64',
  'darwin-x64': 'osx-x64',
  'darwin-arm64': 'osx-arm64',
  'win32-x64': 'win-x64',
  'win32-arm64': 'win-arm64',
};

const quietDotnet = {
  DOTNET_CLI_TELEMETRY_OPTOUT: '1',
  DOTNET_NOLOGO: '1',
  DOTNET_SKIP_FIRST_TIME_EXPERIENCE: '1',
};

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  return {
    status: result.error ? null : result.status,
    stdout: result.stdout ?? '',
    stderr: result.stderr ?? '',
    missing: result.error?.code === 'ENOENT',
  };
}

/** "Bicep CLI version 0.49.2 (b34271ac51)" -> "0.49.2"; undefined when the command is not a working Bicep CLI. */
function versionOf(command) {
  const result = run(command, ['--version']);
  if (result.status !== 0) return undefined;
  return /Bicep CLI version (\d+\.\d+\.\d+)/.exec(result.stdout)?.[1];
}

export function nugetPackageId() {
  const rid = NUGET_RIDS[`${process.platform}-${process.arch}`];
  return rid ? `Azure.Bicep.CommandLine.${rid}` : undefined;
}

function nugetBinary(cacheDir, packageId) {
  const exe = process.platform === 'win32' ? 'bicep.exe' : 'bicep';
  return path.join(cacheDir, 'packages', packageId.toLowerCase(), BICEP_VERSION, 'tools', exe);
}

/**
 * Restores the pinned CLI package with the ordinary NuGet client (`dotnet restore` of a throwaway project that only
 * downloads it). Returns the binary, or why it could not.
 */
function restoreFromNuGet(cacheDir, packageId, log) {
  const binary = nugetBinary(cacheDir, packageId);
  if (existsSync(binary)) return { binary };
  const sdk = run('dotnet', ['--version'], { env: { ...process.env, ...quietDotnet } });
  if (sdk.status !== 0) return { why: 'no .NET SDK (`dotnet`) to restore it from NuGet' };
  const major = /^(\d+)\./.exec(sdk.stdout.trim())?.[1];
  if (!major) return { why: `cannot read the .NET SDK version from "${sdk.stdout.trim()}"` };
  const projectDir = path.join(cacheDir, 'restore');
  mkdirSync(projectDir, { recursive: true });
  const project = path.join(projectDir, 'bicep-cli.csproj');
  // PackageDownload fetches the package without referencing it; the SDK's own target framework needs no other package.
  writeFileSync(
    project,
    `<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFramework>net${major}.0</TargetFramework>
  </PropertyGroup>
  <ItemGroup>
    <PackageDownload Include="${packageId}" Version="[${BICEP_VERSION}]" />
  </ItemGroup>
</Project>
`,
  );
  log(`Restoring ${packageId} ${BICEP_VERSION} from NuGet into ${path.relative(process.cwd(), cacheDir) || '.'} ...`);
  const restore = run('dotnet', ['restore', project, '--packages', path.join(cacheDir, 'packages')], {
    env: { ...process.env, ...quietDotnet },
  });
  if (restore.status !== 0 || !existsSync(binary)) {
    const detail = `${restore.stdout}\n${restore.stderr}`
      .split('\n')
      .filter((line) => /error|warn/i.test(line))
      .slice(0, 5)
      .join('\n');
    return { why: `dotnet restore of ${packageId} ${BICEP_VERSION} failed${detail ? `:\n${detail}` : ''}` };
  }
  // Package extraction does not always keep the executable bit.
  if (process.platform !== 'win32') chmodSync(binary, 0o755);
  return { binary };
}

/** The CLI `az bicep install` put in the Azure CLI's folder; run directly, because `az bicep` downloads one when missing. */
function azBicepBinary() {
  if (run('az', ['--version']).missing) return undefined;
  const configDir = process.env.AZURE_CONFIG_DIR ?? path.join(os.homedir(), '.azure');
  const binary = path.join(configDir, 'bin', process.platform === 'win32' ? 'bicep.exe' : 'bicep');
  return existsSync(binary) ? binary : undefined;
}

/**
 * Finds a Bicep CLI, in order: `bicep` on PATH, the `az bicep` one, the NuGet package (restored when `restore`).
 * A CLI of another version than BICEP_VERSION is passed over for the pinned NuGet one, so the compiled JSON is the
 * same on every machine; it is used only when the pinned one cannot be had.
 * @returns {{ found: true, command: string, version: string, source: string, note?: string } | { found: false, tried: string[] }}
 */
export function findBicep({ root = process.cwd(), restore = true, log = () => {} } = {}) {
  const tried = [];
  const otherVersions = [];
  const onPath = versionOf('bicep');
  if (onPath === BICEP_VERSION) return { found: true, command: 'bicep', version: onPath, source: 'bicep on PATH' };
  if (onPath) otherVersions.push({ command: 'bicep', version: onPath, source: 'bicep on PATH' });
  tried.push(onPath ? `bicep on PATH is ${onPath}, not ${BICEP_VERSION}` : 'no bicep on PATH');

  const az = azBicepBinary();
  const azVersion = az && versionOf(az);
  if (az && azVersion === BICEP_VERSION) return { found: true, command: az, version: azVersion, source: 'az bicep' };
  if (az && azVersion) otherVersions.push({ command: az, version: azVersion, source: 'az bicep' });
  tried.push(azVersion ? `az bicep is ${azVersion}, not ${BICEP_VERSION}` : 'no az bicep');

  const packageId = nugetPackageId();
  const cacheDir = path.join(root, '.cache', 'bicep');
  if (!packageId) {
    tried.push(`no NuGet package of the Bicep CLI for ${process.platform}-${process.arch}`);
  } else {
    const restored = restore
      ? restoreFromNuGet(cacheDir, packageId, log)
      : existsSync(nugetBinary(cacheDir, packageId))
        ? { binary: nugetBinary(cacheDir, packageId) }
        : { why: `${packageId} ${BICEP_VERSION} is not restored in .cache/bicep` };
    const version = restored.binary && versionOf(restored.binary);
    if (version) return { found: true, command: restored.binary, version, source: `NuGet ${packageId} (.cache/bicep)` };
    tried.push(restored.why ?? `${restored.binary} does not run`);
  }

  const fallback = otherVersions[0];
  if (fallback) {
    return {
      ...fallback,
      found: true,
      note: `Bicep CLI ${fallback.version} is used, not ${BICEP_VERSION}: the compiled JSON may differ from the committed one (${tried.join('; ')})`,
    };
  }
  return { found: false, tried };
}

/** One diagnostic line of the CLI's default format: `path(line,col) : Level code: message`. */
export function parseDiagnostics(text) {
  const diagnostics = [];
  for (const line of text.split(/\r?\n/)) {
    const match = /^(.+?)\((\d+),(\d+)\) : (Error|Warning|Info) ([^:\s]+): (.*)$/.exec(line.trim());
    if (!match) continue;
    const [, file, row, column, level, code, message] = match;
    diagnostics.push({
      file: path.relative(process.cwd(), file).split(path.sep).join('/'),
      line: Number(row),
      column: Number(column),
      level: level.toLowerCase(),
      code,
      message,
    });
  }
  return diagnostics;
}

/**
 * Compiles the entry templates into `outDir` (one CLI start for all) and returns their JSON text by entry path,
 * with the diagnostics the compiler printed.
 */
export function compileTemplates(cli, outDir, entries = ENTRY_TEMPLATES) {
  mkdirSync(outDir, { recursive: true });
  const result = run(cli.command, ['build', '--pattern', 'infra/*.bicep', '--outdir', outDir]);
  const diagnostics = parseDiagnostics(`${result.stdout}\n${result.stderr}`);
  const compiled = {};
  for (const entry of entries) {
    const file = path.join(outDir, `${path.basename(entry, '.bicep')}.json`);
    if (existsSync(file)) compiled[entry] = readFileSync(file, 'utf8');
  }
  const unexpected = readdirSync(outDir).filter(
    (name) => !entries.some((entry) => `${path.basename(entry, '.bicep')}.json` === name),
  );
  return { status: result.status, diagnostics, compiled, unexpected, output: `${result.stdout}${result.stderr}` };
}

/** Lints every .bicep file under infra/ (modules too) with infra/bicepconfig.json. */
export function lintTemplates(cli) {
  const result = run(cli.command, ['lint', '--pattern', 'infra/**/*.bicep']);
  return { status: result.status, diagnostics: parseDiagnostics(`${result.stdout}\n${result.stderr}`) };
}

/** A compiled template without the generator's version and hash, which say nothing about what ARM receives. */
export function withoutGenerator(jsonText) {
  const strip = (value) => {
    if (Array.isArray(value)) return value.map(strip);
    if (value && typeof value === 'object') {
      const copy = {};
      for (const [key, inner] of Object.entries(value)) {
        if (key === '_generator') continue;
        copy[key] = strip(inner);
      }
      return copy;
    }
    return value;
  };
  return strip(JSON.parse(jsonText));
}
