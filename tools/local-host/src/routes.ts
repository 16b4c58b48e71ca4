// HTTP trigger route templates (ASP.NET Core syntax, as the Functions host uses): literal text, `{name}`,
// `{name?}` (optional), `{*name}` (catch-all, last) and the common constraints `{name:int}`, `:long`, `:bool`,
// `:guid`, `:alpha`. Literals match case-insensitively; captured values are URL-decoded.

const constraints: Record<string, string> = {
  int: '-?\\d+',
  long: '-?\\d+',
  bool: 'true|false',
  guid: '[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}',
  alpha: '[a-zA-Z]+',
};

export interface RouteMatcher {
  template: string;
  /** Orders matching: more literal text first, catch-alls last (roughly ASP.NET's precedence). */
  precedence: number;
  /** The parameters when `path` (below `/api/`, no leading slash, still percent-encoded) matches. */
  match(path: string): Record<string, string | null> | undefined;
}

export function compileRoute(template: string): RouteMatcher {
  const trimmed = template.replace(/^\/+|\/+$/g, '');
  const names: string[] = [];
  let literalChars = 0;
  let catchAll = false;
  const fail = (why: string): never => {
    throw new Error(`Invalid route template "${template}": ${why}.`);
  };

  const segments = trimmed === '' ? [] : trimmed.split('/');
  const pattern = segments
    .map((segment, index) => {
      const parameter = /^\{([^{}]+)\}$/.exec(segment);
      if (parameter) {
        const { name, regex, optional, isCatchAll } = parseParameter(parameter[1]!, fail);
        names.push(name);
        if (isCatchAll) {
          if (index !== segments.length - 1) fail(`the catch-all {*${name}} must be the last segment`);
          catchAll = true;
          return `(?:/(.*))?`;
        }
        if (optional && index !== segments.length - 1) fail(`the optional {${name}?} must be the last segment`);
        return optional ? `(?:/(${regex}))?` : `/(${regex})`;
      }
      // A segment mixing text and parameters, e.g. `{name}.{ext}`.
      let source = '';
      let rest = segment;
      while (rest !== '') {
        const open = rest.indexOf('{');
        const literal = open === -1 ? rest : rest.slice(0, open);
        if (literal.includes('}')) fail(`"${segment}" has an unmatched "}"`);
        source += escapeRegex(literal);
        literalChars += literal.length;
        if (open === -1) break;
        const close = rest.indexOf('}', open);
        if (close === -1) fail(`"${segment}" has an unclosed "{"`);
        const { name, regex, optional, isCatchAll } = parseParameter(rest.slice(open + 1, close), fail);
        if (optional || isCatchAll) fail(`"${segment}" mixes text with an optional or catch-all parameter`);
        names.push(name);
        source += `(${regex})`;
        rest = rest.slice(close + 1);
      }
      return `/${source}`;
    })
    .join('');

  if (new Set(names.map((n) => n.toLowerCase())).size !== names.length) fail('a parameter name is used twice');
  const regex = new RegExp(`^${pattern}/?$`, 'i');
  return {
    template,
    precedence: (catchAll ? -1_000_000 : 0) + literalChars * 100 - names.length,
    match(path) {
      const found = regex.exec(path === '' ? '' : `/${path}`);
      if (!found) return undefined;
      const params: Record<string, string | null> = {};
      names.forEach((name, i) => {
        const raw = found[i + 1];
        params[name] = raw === undefined ? null : decodePathValue(raw);
      });
      return params;
    },
  };
}

function parseParameter(
  text: string,
  fail: (why: string) => never,
): { name: string; regex: string; optional: boolean; isCatchAll: boolean } {
  let body = text.trim();
  const isCatchAll = body.startsWith('*');
  if (isCatchAll) body = body.replace(/^\*+/, '');
  const optional = body.endsWith('?');
  if (optional) body = body.slice(0, -1);
  const [name, ...constraintNames] = body.split(':');
  if (!name || !/^[A-Za-z_][\w-]*$/.test(name)) fail(`"{${text}}" is not a valid parameter`);
  // Greedy: ASP.NET matches mixed segments right to left, so `{name}.{ext}` on a.b.c gives name a.b, ext c.
  let regex = '[^/]+';
  for (const constraint of constraintNames) {
    const constraintRegex = constraints[constraint.toLowerCase()];
    if (!constraintRegex) {
      fail(`the constraint ":${constraint}" is not supported here (use ${Object.keys(constraints).join(', ')})`);
    }
    regex = `(?:${constraintRegex})`;
  }
  return { name, regex, optional, isCatchAll };
}

function decodePathValue(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw; // not valid percent-encoding: pass it on as sent
  }
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
