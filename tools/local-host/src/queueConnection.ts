// Resolves a queue trigger's `connection` the way the Functions host resolves storage connections: the app setting
// named by `connection` (default AzureWebJobsStorage), else `AzureWebJobs<connection>`; a value is a connection
// string, a group of `<name>__*` settings is an identity-based connection. Identity-based connections are supported
// through @azure/identity's DefaultAzureCredential (a user-assigned identity with `<name>__clientId`), as the host
// does with its managed identity. Errors name the settings, never their values.
import { DefaultAzureCredential } from '@azure/identity';
import { QueueServiceClient } from '@azure/storage-queue';

export interface QueueConnection {
  /** The app setting (or setting prefix) the connection came from, for messages. */
  settingName: string;
  client: QueueServiceClient;
}

const defaultConnectionName = 'AzureWebJobsStorage';

export function resolveQueueConnection(connection: string | undefined, env: NodeJS.ProcessEnv): QueueConnection {
  const name = connection?.trim() || defaultConnectionName;
  const candidates = name.toLowerCase().startsWith('azurewebjobs') ? [name] : [name, `AzureWebJobs${name}`];
  for (const settingName of candidates) {
    const value = env[settingName];
    if (value !== undefined && value.trim() !== '')
      return { settingName, client: fromConnectionString(settingName, value) };
    const identityBased = fromIdentitySettings(settingName, env);
    if (identityBased) return identityBased;
  }
  throw new Error(
    `The storage connection "${name}" is not configured: set ${candidates.join(' or ')} to a connection string, ` +
      `or ${name}__queueServiceUri (or ${name}__accountName) for an identity-based connection.`,
  );
}

function fromConnectionString(settingName: string, connectionString: string): QueueServiceClient {
  try {
    return QueueServiceClient.fromConnectionString(connectionString);
  } catch {
    // The SDK's message may quote the string, and with it the account key: say only where it came from.
    throw new Error(`The app setting ${settingName} is not a valid storage connection string.`);
  }
}

function fromIdentitySettings(prefix: string, env: NodeJS.ProcessEnv): QueueConnection | undefined {
  const setting = (suffix: string): string | undefined => {
    const wanted = `${prefix}__${suffix}`.toLowerCase();
    const key = Object.keys(env).find((k) => k.toLowerCase() === wanted);
    const value = key === undefined ? undefined : env[key]?.trim();
    return value ? value : undefined;
  };
  const accountName = setting('accountName');
  const serviceUri =
    setting('queueServiceUri') ??
    setting('serviceUri') ??
    (accountName ? `https://${accountName}.queue.core.windows.net` : undefined);
  if (!serviceUri) return undefined;
  let url: URL;
  try {
    url = new URL(serviceUri);
  } catch {
    throw new Error(
      `${prefix}__queueServiceUri must be the queue service URL (https://<account>.queue.core.windows.net).`,
    );
  }
  const clientId = setting('clientId');
  const credential = new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {});
  return { settingName: `${prefix}__*`, client: new QueueServiceClient(url.toString().replace(/\/$/, ''), credential) };
}
