// A burst of Key Vault events that concern no hub, delivered to the app's Event Grid webhook the way Event Grid
// delivers: one event per POST (the default batch size for webhooks), several deliveries in flight.
import { randomBytes } from 'node:crypto';
import type { KeyVaultEventGridEvent as EventGridEvent } from '@cmk-rotator/emulators/contracts';
import { mapWithConcurrency } from '../../../src/domain/concurrency';

export interface UnrelatedKey {
  name: string;
  /** A real version of the key (events name versions that exist). */
  version: string;
}

export interface BurstResult {
  events: number;
  inFlight: number;
  mix: Record<string, number>;
  wallMs: number;
  eventsPerSecond: number;
  /** Deliveries the webhook did not acknowledge (Event Grid would retry them). */
  failures: number;
  latencyMs: { p50: number; p95: number; max: number };
}

const version = () => randomBytes(16).toString('hex');

function vaultEvent(vault: string, type: string, objectType: string, collection: string, name: string, ver: string) {
  const event: EventGridEvent = {
    id: randomBytes(16).toString('hex'),
    topic: `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-vaults/providers/Microsoft.KeyVault/vaults/${vault}`,
    subject: name,
    eventType: `Microsoft.KeyVault.${type}`,
    eventTime: new Date().toISOString(),
    data: {
      Id: `https://${vault}.vault.azure.net/${collection}/${name}/${ver}`,
      VaultName: vault,
      ObjectType: objectType,
      ObjectName: name,
      Version: ver,
      NBF: null,
      EXP: null,
    },
    dataVersion: '1',
    metadataVersion: '1',
  };
  return event;
}

/**
 * `count` events, in this mix: new versions of keys in the rotator's vault that no hub uses (the app must look and
 * find nothing to do), secret and certificate events from that vault, key events from a vault the rotator does not
 * manage, and vault access-policy changes. Interleaved, as a busy vault's events arrive.
 */
export function unrelatedEvents(
  vault: string,
  foreignVault: string,
  unusedKeys: readonly UnrelatedKey[],
  count: number,
): { events: EventGridEvent[]; mix: Record<string, number> } {
  const kinds: { label: string; share: number; make: (i: number) => EventGridEvent }[] = [
    {
      label: 'KeyNewVersionCreated, unused key',
      share: 0.4,
      make: (i) => {
        const key = unusedKeys[i % unusedKeys.length]!;
        return vaultEvent(vault, 'KeyNewVersionCreated', 'Key', 'keys', key.name, key.version);
      },
    },
    {
      label: 'Secret events',
      share: 0.2,
      make: (i) =>
        vaultEvent(
          vault,
          i % 2 ? 'SecretNewVersionCreated' : 'SecretNearExpiry',
          'Secret',
          'secrets',
          `app-secret-${i % 25}`,
          version(),
        ),
    },
    {
      label: 'Certificate events',
      share: 0.1,
      make: (i) =>
        vaultEvent(vault, 'CertificateNewVersionCreated', 'Certificate', 'certificates', `tls-${i % 10}`, version()),
    },
    {
      label: 'Key events, foreign vault',
      share: 0.2,
      make: (i) =>
        vaultEvent(
          foreignVault,
          i % 2 ? 'KeyNewVersionCreated' : 'KeyNearExpiry',
          'Key',
          'keys',
          `their-key-${i % 20}`,
          version(),
        ),
    },
    {
      label: 'VaultAccessPolicyChanged',
      share: 0.1,
      make: () => ({
        ...vaultEvent(vault, 'VaultAccessPolicyChanged', 'Vault', 'vaults', vault, version()),
        data: { Id: `https://${vault}.vault.azure.net`, VaultName: vault, ObjectType: 'Vault', ObjectName: vault },
      }),
    },
  ];
  const queues = kinds.map((kind) => {
    const n = Math.round(kind.share * count);
    return { label: kind.label, events: Array.from({ length: n }, (_, i) => kind.make(i)) };
  });
  const events: EventGridEvent[] = [];
  for (let i = 0; events.length < count && queues.some((q) => q.events.length > i); i++) {
    for (const queue of queues) {
      const event = queue.events[i];
      if (event && events.length < count) events.push(event);
    }
  }
  return { events, mix: Object.fromEntries(queues.map((q) => [q.label, q.events.length])) };
}

export async function deliverBurst(
  webhookUrl: string,
  events: readonly EventGridEvent[],
  mix: Record<string, number>,
  inFlight: number,
): Promise<BurstResult> {
  const latencies: number[] = [];
  let failures = 0;
  const started = performance.now();
  await mapWithConcurrency(events, inFlight, async (event) => {
    const sent = performance.now();
    try {
      const response = await fetch(webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
        body: JSON.stringify([event]),
      });
      await response.text();
      if (response.status < 200 || response.status >= 300) failures++;
    } catch {
      failures++;
    }
    latencies.push(performance.now() - sent);
  });
  const wallMs = performance.now() - started;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    events: events.length,
    inFlight,
    mix,
    wallMs,
    eventsPerSecond: events.length / (wallMs / 1000),
    failures,
    latencyMs: { p50: at(0.5), p95: at(0.95), max: latencies[latencies.length - 1] ?? 0 },
  };
}
