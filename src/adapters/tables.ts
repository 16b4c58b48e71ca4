import type { TableClient } from '@azure/data-tables';
import { guard } from './azureErrors';

/** Runs `create` on first use only (creation that treats "already exists" as success); a failed attempt is retried next time. */
export function createdOnFirstUse(what: string, create: () => Promise<unknown>): () => Promise<void> {
  let ready: Promise<void> | undefined;
  return () => {
    ready ??= guard(what, async () => void (await create())).catch((error: unknown) => {
      ready = undefined;
      throw error;
    });
    return ready;
  };
}

/** Creates the table on first use (the SDK treats "already exists" as success). */
export function tableReady(table: TableClient, what: string): () => Promise<void> {
  return createdOnFirstUse(what, () => table.createTable());
}
