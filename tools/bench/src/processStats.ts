// Memory: how much the host process held at its peak.
import { readFileSync, writeFileSync } from 'node:fs';

/** The process's peak resident memory (VmHWM) in bytes; undefined where /proc is not available. */
export function peakRssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Starts a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM); false where that is not possible. */
export function resetPeakRss(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
