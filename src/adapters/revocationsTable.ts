// The revocation ledger in Azure Table Storage: one row per key (its last revocation), in the key's partition.
import { isRestError } from '@azure/core-rest-pipeline';
import type { TableClient } from '@azure/data-tables';
import type { KeyName } from '../domain/keyId';
import type { Revocation, RevocationLedger } from '../domain/ports';
import { partitionFor } from './auditTable';
import { guard } from './azureErrors';
import { tableReady } from './tables';

export const REVOCATIONS_TABLE = 'KeyRevocations';
const ROW = 'last-revocation';

type RevocationEntity = {
  partitionKey: string;
  rowKey: string;
  vaultUrl: string;
  keyName: string;
  /** JSON array: Table Storage has no list type. */
  versions: string;
  version?: string;
  revokedAt: Date;
  correlationId: string;
  restoredAt?: Date;
};

export class RevocationsTableAdapter implements RevocationLedger {
  private readonly ensureTable: () => Promise<void>;

  constructor(private readonly table: TableClient) {
    this.ensureTable = tableReady(table, 'the revocations table');
  }

  async record(revocation: Revocation): Promise<void> {
    await this.ensureTable();
    const entity: RevocationEntity = {
      partitionKey: partitionFor(revocation.key),
      rowKey: ROW,
      vaultUrl: revocation.key.vaultUrl,
      keyName: revocation.key.name,
      versions: JSON.stringify(revocation.versions),
      ...(revocation.version ? { version: revocation.version } : {}),
      revokedAt: revocation.revokedAt,
      correlationId: revocation.correlationId,
      ...(revocation.restoredAt ? { restoredAt: revocation.restoredAt } : {}),
    };
    await guard('the revocations table', () => this.table.upsertEntity(entity, 'Replace'));
  }

  async last(key: KeyName): Promise<Revocation | undefined> {
    await this.ensureTable();
    const entity = await guard('the revocations table', async () => {
      try {
        return await this.table.getEntity<RevocationEntity>(partitionFor(key), ROW);
      } catch (error) {
        if (isRestError(error) && error.statusCode === 404) return undefined;
        throw error;
      }
    });
    if (!entity) return undefined;
    return {
      key: { vaultUrl: entity.vaultUrl, name: entity.keyName },
      versions: JSON.parse(entity.versions || '[]') as string[],
      ...(entity.version ? { version: entity.version } : {}),
      revokedAt: new Date(entity.revokedAt),
      correlationId: entity.correlationId,
      ...(entity.restoredAt ? { restoredAt: new Date(entity.restoredAt) } : {}),
    };
  }
}
