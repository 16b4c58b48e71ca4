import type { TableClient } from '@azure/data-tables';
import { guard } from './azureErrors';

/** Creates the table on first use (the SDK treats "already exists" as success); a failed attempt is retried next time. */
export function tableReady(table: TableClient, what: string): () => Promise<void> {
  let ready: Promise<void> | undefined;
  return () => {
    ready ??= guard(what, () => table.createTable()).catch((error: unknown) => {
      ready = undefined;
      throw error;
    });
    return ready;
  };
}
