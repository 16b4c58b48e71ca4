// Reads Bicep files with tree-sitter-bicep so tests can check templates by structure, not by text matching.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Node } from 'web-tree-sitter';
import { Language, Parser } from 'web-tree-sitter';

export interface BicepFile {
  /** Path relative to the repository root, with forward slashes. */
  path: string;
  lines: string[];
  root: Node;
}

export interface BicepResource {
  file: BicepFile;
  symbol: string;
  /** Full type, e.g. `Microsoft.Web/sites/config` for a `config` child declared inside a site. */
  type: string;
  apiVersion: string;
  existing: boolean;
  body: Node;
  line: number;
}

export interface BicepModule {
  file: BicepFile;
  symbol: string;
  /** The referenced file, relative to the repository root. */
  target: string;
  body: Node;
  line: number;
}

export interface BicepParameter {
  name: string;
  hasDefault: boolean;
}

let parser: Parser | undefined;

async function bicepParser(): Promise<Parser> {
  if (!parser) {
    await Parser.init();
    const wasm = createRequire(import.meta.url).resolve('tree-sitter-bicep/tree-sitter-bicep.wasm');
    const language = await Language.load(wasm);
    parser = new Parser();
    parser.setLanguage(language);
  }
  return parser;
}

function bicepPaths(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.bicep'))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

export async function parseBicepFiles(dir: string): Promise<BicepFile[]> {
  const bicep = await bicepParser();
  return bicepPaths(dir).map((file) => {
    const source = readFileSync(file, 'utf8');
    const tree = bicep.parse(source);
    if (!tree) throw new Error(`tree-sitter returned no tree for ${file}`);
    return {
      path: path.relative(process.cwd(), file).split(path.sep).join('/'),
      lines: source.split('\n'),
      root: tree.rootNode,
    };
  });
}

/** `file:line:column: ...` for every ERROR or MISSING node. */
export function syntaxProblems(file: BicepFile): string[] {
  const problems: string[] = [];
  const visit = (node: Node): void => {
    const where = `${file.path}:${node.startPosition.row + 1}:${node.startPosition.column + 1}`;
    if (node.isMissing) problems.push(`${where}: missing ${node.type}`);
    else if (node.type === 'ERROR')
      problems.push(`${where}: cannot parse "${node.text.split('\n')[0]?.slice(0, 60) ?? ''}"`);
    for (const child of node.children) visit(child);
  };
  visit(file.root);
  return problems;
}

/** The object a resource or module declaration assigns (through `if (...)` and `[for ...: ...]`). */
function declarationBody(declaration: Node): Node | undefined {
  const value = declaration.namedChildren.at(-1);
  if (!value) return undefined;
  if (value.type === 'object') return value;
  if (value.type === 'if_statement' || value.type === 'for_statement') {
    return value.namedChildren.filter((n) => n.type === 'object').at(-1);
  }
  if (value.type === 'array') return value.namedChildren.map(declarationBody).find(Boolean);
  return undefined;
}

function quotedText(node: Node | undefined): string | undefined {
  if (!node || node.type !== 'string') return undefined;
  const parts = node.namedChildren;
  if (parts.some((p) => p.type !== 'string_content')) return undefined;
  return parts.map((p) => p.text).join('');
}

export function resources(files: BicepFile[]): BicepResource[] {
  const found: BicepResource[] = [];
  const collect = (file: BicepFile, node: Node, parentType?: string, parentApiVersion?: string): void => {
    for (const child of node.namedChildren) {
      if (child.type === 'resource_declaration') {
        const declared = quotedText(child.namedChildren[1]) ?? '';
        const [typePart = '', apiVersion = parentApiVersion ?? ''] = declared.split('@');
        const type = parentType && !typePart.includes('/') ? `${parentType}/${typePart}` : typePart;
        const body = declarationBody(child);
        if (!body) throw new Error(`${file.path}:${child.startPosition.row + 1}: resource without a body`);
        found.push({
          file,
          symbol: child.namedChildren[0]?.text ?? '',
          type,
          apiVersion,
          existing: child.children.some((c) => c.type === 'existing'),
          body,
          line: child.startPosition.row + 1,
        });
        collect(file, body, type, apiVersion);
      } else if (child.type === 'object_property') {
        collect(file, child, parentType, parentApiVersion);
      }
    }
  };
  for (const file of files) collect(file, file.root);
  return found;
}

export function modules(files: BicepFile[]): BicepModule[] {
  return files.flatMap((file) =>
    file.root.namedChildren
      .filter((n) => n.type === 'module_declaration')
      .map((declaration) => {
        const body = declarationBody(declaration);
        if (!body) throw new Error(`${file.path}:${declaration.startPosition.row + 1}: module without a body`);
        const relative = quotedText(declaration.namedChildren[1]) ?? '';
        return {
          file,
          symbol: declaration.namedChildren[0]?.text ?? '',
          target: path.posix.normalize(path.posix.join(path.posix.dirname(file.path), relative)),
          body,
          line: declaration.startPosition.row + 1,
        };
      }),
  );
}

export function parameters(file: BicepFile): BicepParameter[] {
  return file.root.namedChildren
    .filter((n) => n.type === 'parameter_declaration')
    .map((n) => ({ name: n.namedChildren[0]?.text ?? '', hasDefault: n.children.some((c) => c.type === '=') }));
}

export function outputNames(file: BicepFile): string[] {
  return file.root.namedChildren
    .filter((n) => n.type === 'output_declaration')
    .map((n) => n.namedChildren[0]?.text ?? '');
}

/** The expression assigned to a top-level `var`. */
export function variable(file: BicepFile, name: string): Node | undefined {
  const declaration = file.root.namedChildren.find(
    (n) => n.type === 'variable_declaration' && n.namedChildren[0]?.text === name,
  );
  return declaration?.namedChildren.at(-1);
}

function propertyKey(property: Node): string {
  const key = property.namedChildren[0];
  return (key?.type === 'string' ? quotedText(key) : key?.text) ?? '';
}

/** Keys of an object literal, in order. */
export function keys(object: Node): string[] {
  return object.namedChildren.filter((n) => n.type === 'object_property').map(propertyKey);
}

/** The value at a dotted path of object properties, e.g. `properties.functionAppConfig.runtime.name`. */
export function property(object: Node | undefined, dottedPath: string): Node | undefined {
  let current = object;
  for (const key of dottedPath.split('.')) {
    if (current?.type !== 'object') return undefined;
    const match = current.namedChildren.find((n) => n.type === 'object_property' && propertyKey(n) === key);
    current = match?.namedChildren.at(-1);
  }
  return current;
}

/** A plain string literal's text; undefined for anything else (interpolated strings included). */
export function stringValue(node: Node | undefined): string | undefined {
  return quotedText(node);
}

export function arrayItems(node: Node | undefined): Node[] {
  return node?.type === 'array' ? node.namedChildren.filter((n) => n.type !== 'comment') : [];
}

/** The source line a node starts on (for checking trailing comments). */
export function sourceLine(file: BicepFile, node: Node): string {
  return file.lines[node.startPosition.row] ?? '';
}
