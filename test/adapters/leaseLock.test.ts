// The per-key lease when its renewal fails: the holder is told before it creates anything (issue: never create a
// version without holding the lease).
import { randomUUID } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { TableLeaseLock } from '../../src/adapters/leaseLock';
import { BusyError } from '../../src/domain/errors';

const table = () =>
  TableClient.fromConnectionString(inject('storageConnectionString'), `locks${randomUUID().replace(/-/g, '')}`, {
    allowInsecureConnection: true,
  });
const key = () => ({ vaultUrl: 'https://demo.vault.azure.net', name: `k-${randomUUID().slice(0, 8)}` });

describe('TableLeaseLock renewal', () => {
  it('a holder whose lease was taken over (renewal refused) is stopped by assertHeld', async () => {
    const t = table();
    const lock = new TableLeaseLock(t, { leaseMs: 600, pollMs: 20 });
    const k = key();
    const outcome = await lock.runExclusive(k, async (lease) => {
      lease.assertHeld();
      // Another holder rewrites the lease row (as a takeover would): the next renewal's ETag no longer matches.
      for await (const row of t.listEntities<{ holder: string }>()) {
        await t.updateEntity({ partitionKey: row.partitionKey!, rowKey: row.rowKey!, holder: 'someone-else' }, 'Merge');
      }
      await new Promise((resolve) => setTimeout(resolve, 450));
      try {
        lease.assertHeld();
        return 'still held';
      } catch (error) {
        return error instanceof BusyError ? 'stopped' : 'other error';
      }
    });
    expect(outcome).toBe('stopped');
  });

  it('a holder whose renewals go through keeps the lease past its first term', async () => {
    const lock = new TableLeaseLock(table(), { leaseMs: 600, pollMs: 20 });
    const held = await lock.runExclusive(key(), async (lease) => {
      await new Promise((resolve) => setTimeout(resolve, 900));
      lease.assertHeld();
      return true;
    });
    expect(held).toBe(true);
  });
});
