// The per-key guard around "check, then create a version", across every instance of the app: a lease held as a
// Table Storage entity. Taking it is a conditional write (insert, or replace an expired one by its ETag), so exactly
// one invocation holds it; a crashed holder's lease simply expires. (Tables rather than a blob lease: the Table API
// version the SDK speaks is one every Storage emulator accepts.)
import { randomUUID } from 'node:crypto';
import { isRestError } from '@azure/core-rest-pipeline';
import type { TableClient } from '@azure/data-tables';
import { BusyError } from '../domain/errors';
import type { KeyName } from '../domain/keyId';
import type { HeldLease, KeyLock } from '../domain/ports';
import { partitionFor } from './auditTable';
import { tableReady } from './tables';
import { toRotatorError } from './azureErrors';

export const LOCKS_TABLE = 'RotationLocks';
const LEASE_MS = 60_000;
const ROW = 'create-version';

type LeaseEntity = { partitionKey: string; rowKey: string; holder: string; expiresAt: Date };

const status = (error: unknown) => (isRestError(error) ? error.statusCode : undefined);

export class TableLeaseLock implements KeyLock {
  private readonly ensureTable: () => Promise<void>;

  constructor(
    private readonly table: TableClient,
    private readonly options: { waitMs?: number; pollMs?: number; leaseMs?: number } = {},
  ) {
    this.ensureTable = tableReady(table, 'the lock table');
  }

  async runExclusive<T>(key: KeyName, work: (lease: HeldLease) => Promise<T>): Promise<T> {
    await this.ensureTable();
    const holder = randomUUID();
    const partitionKey = partitionFor(key);
    let etag = await this.acquire(partitionKey, holder, key);
    const leaseMs = this.options.leaseMs ?? LEASE_MS;
    let heldUntil = Date.now() + leaseMs;
    let lost = false;
    // Renew while working, so a slow creation keeps the lease; a failed renewal means another holder may take it
    // over, so the work is told to stop before it creates anything. Give it back when done.
    const renewal = setInterval(() => {
      const lease = this.lease(partitionKey, holder, leaseMs);
      void this.table
        .updateEntity(lease, 'Replace', { etag: etag ?? '*' })
        .then((r) => {
          etag = r.etag;
          heldUntil = lease.expiresAt.getTime();
        })
        .catch(() => (lost = true));
    }, leaseMs / 3);
    const held: HeldLease = {
      assertHeld() {
        // A margin for the time between this check and the write it guards.
        if (lost || Date.now() > heldUntil - leaseMs / 6) throw new BusyError(`Key ${key.name}`);
      },
    };
    try {
      return await work(held);
    } finally {
      clearInterval(renewal);
      await this.table.deleteEntity(partitionKey, ROW, { etag: etag ?? '*' }).catch(() => undefined);
    }
  }

  private async acquire(partitionKey: string, holder: string, key: KeyName): Promise<string | undefined> {
    const deadline = Date.now() + (this.options.waitMs ?? 20_000);
    for (;;) {
      try {
        return (await this.table.createEntity(this.lease(partitionKey, holder))).etag;
      } catch (error) {
        if (status(error) !== 409) throw toRotatorError(error, 'the lock table');
      }
      try {
        const current = await this.table.getEntity<LeaseEntity>(partitionKey, ROW);
        if (new Date(current.expiresAt).getTime() < Date.now()) {
          // The holder died without giving the lease back: take it over, unless someone else just did.
          return (await this.table.updateEntity(this.lease(partitionKey, holder), 'Replace', { etag: current.etag }))
            .etag;
        }
      } catch (error) {
        if (status(error) !== 404 && status(error) !== 412) throw toRotatorError(error, 'the lock table');
        continue; // released or taken over in between: try again at once
      }
      if (Date.now() > deadline) throw new BusyError(`Key ${key.name}`);
      await new Promise((resolve) => setTimeout(resolve, this.options.pollMs ?? 250));
    }
  }

  private lease(partitionKey: string, holder: string, leaseMs = this.options.leaseMs ?? LEASE_MS): LeaseEntity {
    return { partitionKey, rowKey: ROW, holder, expiresAt: new Date(Date.now() + leaseMs) };
  }
}
