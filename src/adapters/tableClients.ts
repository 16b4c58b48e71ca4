// Clients for the tables of the app's storage account: through its connection string (Azurite included) or an identity.
import type { TokenCredential } from '@azure/core-auth';
import { TableClient } from '@azure/data-tables';
import type { StorageSettings } from '../config';

export function tableClient(storage: StorageSettings, credential: TokenCredential, name: string): TableClient {
  if (storage.kind === 'identity') return new TableClient(storage.tableUrl, name, credential);
  const { connectionString } = storage;
  // Azurite speaks plain HTTP; the connection string says so, and the SDK must be told it may.
  const insecure = /UseDevelopmentStorage=true|DefaultEndpointsProtocol=http;|Endpoint=http:\/\//i.test(
    connectionString,
  );
  return TableClient.fromConnectionString(connectionString, name, { allowInsecureConnection: insecure });
}
