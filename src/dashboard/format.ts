// Times in the viewer's zone (UTC on hover), durations and short version names.
import { h } from './dom';

const local = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const localDate = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

/** A <time> in the viewer's zone, with the UTC time as its tooltip. */
export function time(iso: string | undefined, { dateOnly = false } = {}): HTMLElement | string {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return h(
    'time',
    { datetime: date.toISOString(), title: `${date.toISOString().replace('T', ' ').slice(0, 19)} UTC` },
    (dateOnly ? localDate : local).format(date),
  );
}

export const DAY_MS = 86_400_000;

/** Whole days from now until `iso` (negative when past). */
export function daysUntil(iso: string | undefined, now: number): number | undefined {
  return iso ? Math.floor((new Date(iso).getTime() - now) / DAY_MS) : undefined;
}

export function duration(ms: number | undefined): string {
  if (ms === undefined) return '';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

/** A key version's first 8 characters: enough to tell versions apart on screen (the full id is in the tooltip). */
export const shortVersion = (version: string | undefined): string => (version ?? '').slice(0, 8);

/** The version part of `https://<vault>/keys/<name>/<version>`. */
export const versionOfId = (id: string): string => id.split('/')[5] ?? '';

export const plural = (n: number, word: string): string => `${n.toLocaleString()} ${word}${n === 1 ? '' : 's'}`;
