// Types for scripts/bicepCli.mjs, which runs under plain Node.js (no build step) and is imported by the tests.
export const BICEP_VERSION: string;
export const ENTRY_TEMPLATES: string[];

export type BicepCli =
  { found: true; command: string; version: string; source: string; note?: string } | { found: false; tried: string[] };

export interface BicepDiagnostic {
  file: string;
  line: number;
  column: number;
  level: 'error' | 'warning' | 'info';
  code: string;
  message: string;
}

export function nugetPackageId(): string | undefined;
export function findBicep(options?: { root?: string; restore?: boolean; log?: (line: string) => void }): BicepCli;
export function parseDiagnostics(text: string): BicepDiagnostic[];
export function compileTemplates(
  cli: Extract<BicepCli, { found: true }>,
  outDir: string,
  entries?: string[],
): {
  status: number | null;
  diagnostics: BicepDiagnostic[];
  compiled: Record<string, string>;
  unexpected: string[];
  output: string;
};
export function lintTemplates(cli: Extract<BicepCli, { found: true }>): {
  status: number | null;
  diagnostics: BicepDiagnostic[];
};
export function withoutGenerator(jsonText: string): unknown;
