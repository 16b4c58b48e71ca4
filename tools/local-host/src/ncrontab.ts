// NCRONTAB schedules as the Functions timer trigger reads them: `{second} {minute} {hour} {day} {month}
// {day-of-week}` (a 5-field expression has no seconds field and fires at second 0), evaluated in UTC. Fields take
// `*`, numbers, `a-b` ranges, `/step`s and `,` lists; months and weekdays also take names (jan, mon). As in NCrontab,
// a time must match the day-of-month AND the day-of-week field.

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
}

const fieldSpecs: readonly FieldSpec[] = [
  { name: 'second', min: 0, max: 59 },
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day', min: 1, max: 31 },
  {
    name: 'month',
    min: 1,
    max: 12,
    names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
  },
  { name: 'day-of-week', min: 0, max: 6, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];

export interface CronSchedule {
  expression: string;
  /** The first occurrence strictly after `after` (whole seconds, UTC). */
  next(after: Date): Date;
}

/** How far ahead `next` looks before deciding the expression never fires (e.g. `0 0 0 30 2 *`). */
const searchYears = 5;

export function parseNcrontab(expression: string): CronSchedule {
  const parts = expression.trim().split(/\s+/);
  if (parts.length === 5) parts.unshift('0');
  if (parts.length !== 6) {
    throw new Error(
      `Invalid NCRONTAB expression "${expression}": expected 6 fields ({second} {minute} {hour} {day} {month} {day-of-week}), got ${parts.length}.`,
    );
  }
  const [seconds, minutes, hours, days, months, weekdays] = fieldSpecs.map((spec, i) =>
    parseField(parts[i]!, spec, expression),
  ) as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];

  const next = (after: Date): Date => {
    let t = new Date(Math.floor(after.getTime() / 1000) * 1000 + 1000);
    const limit = after.getTime() + searchYears * 366 * 24 * 3600 * 1000;
    while (t.getTime() <= limit) {
      const [y, mo, d, h, mi] = [
        t.getUTCFullYear(),
        t.getUTCMonth(),
        t.getUTCDate(),
        t.getUTCHours(),
        t.getUTCMinutes(),
      ];
      if (!months.has(mo + 1)) t = new Date(Date.UTC(y, mo + 1, 1));
      else if (!days.has(d) || !weekdays.has(t.getUTCDay())) t = new Date(Date.UTC(y, mo, d + 1));
      else if (!hours.has(h)) t = new Date(Date.UTC(y, mo, d, h + 1));
      else if (!minutes.has(mi)) t = new Date(Date.UTC(y, mo, d, h, mi + 1));
      else if (!seconds.has(t.getUTCSeconds())) t = new Date(t.getTime() + 1000);
      else return t;
    }
    throw new Error(`NCRONTAB expression "${expression}" never fires.`);
  };
  return { expression, next };
}

function parseField(text: string, spec: FieldSpec, expression: string): Set<number> {
  const fail = (why: string): never => {
    throw new Error(`Invalid NCRONTAB expression "${expression}": ${spec.name} field "${text}" ${why}.`);
  };
  const value = (token: string): number => {
    const byName = spec.names?.indexOf(token.toLowerCase()) ?? -1;
    if (byName >= 0) return byName + spec.min;
    if (!/^\d+$/.test(token)) return fail(`has "${token}", which is not a number`);
    const n = Number(token);
    if (n < spec.min || n > spec.max) fail(`has ${n}, outside ${spec.min}-${spec.max}`);
    return n;
  };

  const result = new Set<number>();
  for (const item of text.split(',')) {
    const [range, stepText, extra] = item.split('/');
    if (extra !== undefined || range === undefined || range === '') fail('is malformed');
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0)
        fail(`has step "${stepText}", which is not a positive number`);
      step = Number(stepText);
    }
    let from: number;
    let to: number;
    if (range === '*') {
      [from, to] = [spec.min, spec.max];
    } else if (range!.includes('-')) {
      const [a, b, more] = range!.split('-');
      if (more !== undefined) fail('is malformed');
      [from, to] = [value(a!), value(b!)];
      if (from > to) fail(`has the range ${a}-${b}, which runs backwards`);
    } else {
      from = value(range!);
      // `5/15` means "from 5, every 15" (to the field's maximum), as in NCrontab.
      to = stepText === undefined ? from : spec.max;
    }
    for (let n = from; n <= to; n += step) result.add(n);
  }
  return result;
}

/**
 * Replaces `%NAME%` with the app setting (environment variable) NAME, as the host resolves binding expressions.
 * A setting that is missing is an error, as it is in Azure.
 */
export function resolveAppSettings(value: string, settings: NodeJS.ProcessEnv, where: string): string {
  return value.replace(/%([^%]+)%/g, (_match, name: string) => {
    const setting = settings[name];
    if (setting === undefined)
      throw new Error(`${where}: '%${name}%' does not resolve to a value (no app setting "${name}").`);
    return setting;
  });
}
