// One controllable clock shared by the emulators, so "a month later" takes an admin call, not a month.

export class EmulatorClock {
  private offsetMs = 0;
  private readonly listeners = new Set<(now: Date) => void>();

  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }

  /** Moves time forward (never back: expiry that happened stays happened). */
  advance(ms: number): Date {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError('advance takes a non-negative number of milliseconds');
    this.offsetMs += ms;
    const now = this.now();
    for (const listener of this.listeners) listener(now);
    return now;
  }

  /** Called after every advance, e.g. to fire the expiry notifications that became due. */
  onAdvance(listener: (now: Date) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
