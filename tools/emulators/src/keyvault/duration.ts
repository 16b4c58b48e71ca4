// ISO 8601 durations as Key Vault's rotation policies use them: P90D, P1Y6M, P2W, PT12H, P1DT12H, ...

export interface IsoDuration {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
}

const PATTERN = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/** Parses a duration, or returns undefined when the text is not one (an empty "P" or "PT" is not one either). */
export function parseIsoDuration(text: string): IsoDuration | undefined {
  const m = PATTERN.exec(text.trim().toUpperCase());
  if (!m || text.trim().toUpperCase() === 'P' || text.trim().toUpperCase().endsWith('T')) return undefined;
  const n = (i: number): number => (m[i] ? Number(m[i]) : 0);
  return { years: n(1), months: n(2), weeks: n(3), days: n(4), hours: n(5), minutes: n(6), seconds: n(7) };
}

/** `from` moved forward by the duration: years and months by the calendar (UTC), the rest by fixed lengths. */
export function addIsoDuration(from: Date, duration: IsoDuration): Date {
  const d = new Date(from.getTime());
  if (duration.years || duration.months) d.setUTCMonth(d.getUTCMonth() + duration.years * 12 + duration.months);
  const ms =
    ((duration.weeks * 7 + duration.days) * 86_400 + duration.hours * 3600 + duration.minutes * 60 + duration.seconds) *
    1000;
  return new Date(d.getTime() + ms);
}

/** `from` moved back by the duration (the start of a "time before expiry" window). */
export function subtractIsoDuration(from: Date, duration: IsoDuration): Date {
  const d = new Date(from.getTime());
  if (duration.years || duration.months) d.setUTCMonth(d.getUTCMonth() - duration.years * 12 - duration.months);
  const ms =
    ((duration.weeks * 7 + duration.days) * 86_400 + duration.hours * 3600 + duration.minutes * 60 + duration.seconds) *
    1000;
  return new Date(d.getTime() - ms);
}

/** Length from a reference instant (the policy limits, e.g. "at least 28 days", are checked this way). */
export function durationMs(duration: IsoDuration, reference = new Date(0)): number {
  return addIsoDuration(reference, duration).getTime() - reference.getTime();
}
