// Reads compiled ARM templates (infra/*.json, what ARM receives): the resources of every nested deployment, and
// expressions followed across module boundaries (a module's parameter to what its parent passed, a module output to
// the expression that produced it), so tests can say where a value really comes from.
import { readFileSync } from 'node:fs';

export interface ArmParameter {
  type: string;
  defaultValue?: unknown;
  minValue?: number;
  maxValue?: number;
  minLength?: number;
  maxLength?: number;
  allowedValues?: unknown[];
}

export interface ArmResource {
  type: string;
  apiVersion: string;
  name: string;
  condition?: unknown;
  existing?: boolean;
  location?: unknown;
  scope?: string;
  subscriptionId?: string;
  resourceGroup?: string;
  dependsOn?: string[];
  copy?: { name: string; count: unknown };
  properties?: any;
  identity?: any;
  tags?: unknown;
}

export interface ArmTemplate {
  languageVersion?: string;
  parameters?: Record<string, ArmParameter>;
  variables?: Record<string, unknown>;
  resources: ArmResource[] | Record<string, ArmResource>;
  outputs?: Record<string, { type: string; value: unknown }>;
}

/** A resource where it sits: its template, and the chain of deployments (modules) that lead to it. */
export interface Placed {
  resource: ArmResource;
  /** Symbolic name (languageVersion 2.0 templates) or index. */
  symbol: string;
  template: ArmTemplate;
  /** The deployment resource whose template holds this one; undefined at the top. */
  parent?: Placed;
}

export function loadTemplate(file: string): ArmTemplate {
  return JSON.parse(readFileSync(file, 'utf8')) as ArmTemplate;
}

function entries(template: ArmTemplate): [string, ArmResource][] {
  const { resources } = template;
  return Array.isArray(resources) ? resources.map((r, i) => [String(i), r]) : Object.entries(resources);
}

/** Every resource in the template and, depth first, in the templates of its nested deployments. */
export function allResources(template: ArmTemplate, parent?: Placed): Placed[] {
  return entries(template).flatMap(([symbol, resource]) => {
    const placed: Placed = { resource, symbol, template, ...(parent ? { parent } : {}) };
    const nested = resource.properties?.template as ArmTemplate | undefined;
    return resource.type === 'Microsoft.Resources/deployments' && nested
      ? [placed, ...allResources(nested, placed)]
      : [placed];
  });
}

/** The module (nested deployment) chain of a resource, outermost first, by symbol or name. */
export function modulePath(placed: Placed): string[] {
  const path: string[] = [];
  for (let p = placed.parent; p; p = p.parent) path.unshift(deploymentLabel(p));
  return path;
}

function deploymentLabel(p: Placed): string {
  return /^\d+$/.test(p.symbol) ? p.resource.name : p.symbol;
}

/** The deployment resource a module is known by: its symbol, its literal name, or a name expression mentioning it. */
export function findModule(template: ArmTemplate, label: string): Placed | undefined {
  const candidates = entries(template).filter(([, r]) => r.type === 'Microsoft.Resources/deployments');
  const exact = candidates.find(([symbol, r]) => symbol === label || r.name === label);
  const found = exact ?? candidates.find(([, r]) => r.name.includes(`'${label}`));
  return found && { resource: found[1], symbol: found[0], template };
}

function expression(value: unknown): string | undefined {
  return typeof value === 'string' && value.startsWith('[') && !value.startsWith('[[') ? value.slice(1, -1) : undefined;
}

/** Index of the parenthesis that closes the one at `open` (quotes respected). */
function closing(text: string, open: number): number {
  let depth = 0;
  let quoted = false;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "'") quoted = !quoted;
    else if (!quoted && c === '(') depth++;
    else if (!quoted && c === ')' && --depth === 0) return i;
  }
  return -1;
}

export interface Context {
  template: ArmTemplate;
  /** The deployment resource that runs this template (its parameters feed the template's). */
  deployment?: Placed;
}

export function contextOf(placed: Placed): Context {
  return { template: placed.template, ...(placed.parent ? { deployment: placed.parent } : {}) };
}

function parentContext(context: Context): Context | undefined {
  const d = context.deployment;
  return d ? { template: d.template, ...(d.parent ? { deployment: d.parent } : {}) } : undefined;
}

/**
 * A value with every `parameters('x')` of a module replaced by what its parent passed, `variables('v')` by the
 * variable's expression, and `reference(<module>).outputs.o.value` by that module's output expression: the
 * expression as the top-level template would have to compute it. Plain values come back as JSON.
 */
export function trace(value: unknown, context: Context, depth = 0): string {
  if (depth > 40) throw new Error('trace: too deep (a cycle?)');
  const text = expression(value);
  if (text === undefined) return JSON.stringify(value);
  let out = text;

  out = out.replace(/parameters\('(\w+)'\)/g, (whole, name: string) => {
    const passed = context.deployment?.resource.properties?.parameters?.[name] as { value?: unknown } | undefined;
    const parent = parentContext(context);
    if (!passed || !parent) return whole;
    return `(${trace(passed.value, parent, depth + 1)})`;
  });
  out = out.replace(/variables\('(\w+)'\)/g, (whole, name: string) => {
    const variable = context.template.variables?.[name];
    return variable === undefined ? whole : `(${trace(variable, context, depth + 1)})`;
  });

  // reference(<a module of this template>).outputs.<name>.value
  let result = '';
  let rest = out;
  for (;;) {
    const at = rest.indexOf('reference(');
    if (at < 0) break;
    const end = closing(rest, at + 'reference'.length);
    const args = rest.slice(at + 'reference('.length, end);
    const output = /^\.outputs\.(\w+)\.value/.exec(rest.slice(end + 1));
    const module = output && moduleFromReference(context.template, args);
    const nested = module?.resource.properties?.template as ArmTemplate | undefined;
    if (output && module && nested?.outputs?.[output[1]!]) {
      const inner = trace(nested.outputs[output[1]!]!.value, { template: nested, deployment: module }, depth + 1);
      result += `${rest.slice(0, at)}(${inner})`;
      rest = rest.slice(end + 1 + output[0].length);
    } else {
      result += rest.slice(0, end + 1);
      rest = rest.slice(end + 1);
    }
  }
  return result + rest;
}

function moduleFromReference(template: ArmTemplate, args: string): Placed | undefined {
  const deployments = entries(template).filter(([, r]) => r.type === 'Microsoft.Resources/deployments');
  // languageVersion 2.0: reference('symbol'); 1.0: reference(...'Microsoft.Resources/deployments', <name>), ...)
  const symbolic = /^'(\w+)'/.exec(args)?.[1];
  if (symbolic) {
    const found = deployments.find(([symbol]) => symbol === symbolic);
    if (found) return { resource: found[1], symbol: found[0], template };
  }
  if (!args.includes("'Microsoft.Resources/deployments'")) return undefined;
  const tail = args.slice(
    args.indexOf("'Microsoft.Resources/deployments'") + "'Microsoft.Resources/deployments', ".length,
  );
  const found = deployments.find(([, r]) => {
    const name = expression(r.name) ?? `'${r.name}'`;
    return tail.startsWith(name);
  });
  return found && { resource: found[1], symbol: found[0], template };
}

/** The template parameters and variables an expression depends on, variables expanded, plus subscription(). */
export function inputsOf(value: unknown, template: ArmTemplate, seen = new Set<string>()): Set<string> {
  const inputs = new Set<string>();
  const text = expression(value) ?? '';
  for (const [, name] of text.matchAll(/parameters\('(\w+)'\)/g)) inputs.add(`parameters.${name}`);
  if (/subscription\(\)/.test(text)) inputs.add('subscription()');
  for (const [, name] of text.matchAll(/variables\('(\w+)'\)/g)) {
    if (seen.has(name!)) continue;
    seen.add(name!);
    for (const input of inputsOf(template.variables?.[name!], template, seen)) inputs.add(input);
  }
  return inputs;
}
