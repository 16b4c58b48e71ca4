// The per-key guard around "check, then create a version", across every instance of the app: a blob lease.
// One blob per key in a container; whoever holds its lease may create. A crashed holder's lease simply expires.
import { isRestError } from '@azure/core-rest-pipeline';
import type { BlobServiceClient, BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { BusyError } from '../domain/errors';
import type { KeyName } from '../domain/keyId';
import type { KeyLock } from '../domain/ports';
import { partitionFor } from './auditTable';
import { guard, toRotatorError } from './azureErrors';

export const LOCKS_CONTAINER = 'cmk-rotator-locks';
const LEASE_SECONDS = 30;

export class BlobLeaseLock implements KeyLock {
  private readonly container: ContainerClient;
  private ready: Promise<unknown> | undefined;

  constructor(
    service: BlobServiceClient,
    private readonly options: { waitMs?: number; pollMs?: number } = {},
  ) {
    this.container = service.getContainerClient(LOCKS_CONTAINER);
  }

  async runExclusive<T>(key: KeyName, work: () => Promise<T>): Promise<T> {
    this.ready ??= guard('the lock container', () => this.container.createIfNotExists()).catch((e: unknown) => {
      this.ready = undefined;
      throw e;
    });
    await this.ready;
    const blob = this.container.getBlockBlobClient(`${partitionFor(key)}.lock`);
    const lease = blob.getBlobLeaseClient();
    const deadline = Date.now() + (this.options.waitMs ?? 20_000);
    for (;;) {
      try {
        await lease.acquireLease(LEASE_SECONDS);
        break;
      } catch (error) {
        const status = isRestError(error) ? error.statusCode : undefined;
        if (status === 404) {
          await createLockBlob(blob);
          continue;
        }
        if (status !== 409) throw toRotatorError(error, 'the lock blob');
        if (Date.now() > deadline) throw new BusyError(`Key ${key.name}`);
        await new Promise((resolve) => setTimeout(resolve, this.options.pollMs ?? 500));
      }
    }
    // Renew while working, so a long creation keeps the lease; release when done.
    const renewal = setInterval(() => void lease.renewLease().catch(() => undefined), (LEASE_SECONDS * 1000) / 3);
    try {
      return await work();
    } finally {
      clearInterval(renewal);
      await lease.releaseLease().catch(() => undefined);
    }
  }
}

async function createLockBlob(blob: BlockBlobClient): Promise<void> {
  try {
    await blob.upload('', 0, { conditions: { ifNoneMatch: '*' } });
  } catch (error) {
    // Someone else created it first (and may hold its lease already): fine.
    if (!(isRestError(error) && (error.statusCode === 409 || error.statusCode === 412))) {
      throw toRotatorError(error, 'the lock blob');
    }
  }
}
