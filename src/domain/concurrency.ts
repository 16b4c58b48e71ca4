/** Runs `work` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapWithConcurrency<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

/** Serialises work per name inside one process (the multi-instance guard is the storage lease). */
export class InProcessLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(name: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(name) ?? Promise.resolve();
    const current = previous.then(work, work);
    const tail = current.catch(() => undefined);
    this.tails.set(name, tail);
    try {
      return await current;
    } finally {
      // Stryker disable next-line all: only frees the name's entry once nothing waits on it; nothing observable.
      if (this.tails.get(name) === tail) this.tails.delete(name);
    }
  }
}

/**
 * Reorders items so their groups take turns (a1 b1 c1 a2 b2 c2 …), keeping the order within each group. Work
 * limited per group (ARM throttles writes per subscription) then proceeds in every group at once instead of
 * draining one group's limit while the others wait behind it.
 */
export function interleaveBy<T>(items: readonly T[], groupOf: (item: T) => string): T[] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const group = groupOf(item);
    const members = groups.get(group);
    if (members) members.push(item);
    else groups.set(group, [item]);
  }
  const lists = [...groups.values()];
  const result: T[] = [];
  for (let i = 0; result.length < items.length; i++) {
    for (const list of lists) if (i < list.length) result.push(list[i] as T);
  }
  return result;
}

/** `items` in consecutive slices of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const result: T[][] = [];
  for (let i = 0; i < items.length; i += size) result.push(items.slice(i, i + size));
  return result;
}
