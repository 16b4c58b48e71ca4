// Event Grid's side of a delivery: the same Key Vault event posted to the app's webhook, again every few seconds
// (at-least-once delivery, to whichever instance), each answer timed.
import { randomBytes } from 'node:crypto';
import type { KeyVaultEventGridEvent as EventGridEvent } from '@cmk-rotator/emulators/contracts';

export function keyEvent(vault: string, type: string, keyName: string, version: string): EventGridEvent {
  return {
    id: randomBytes(16).toString('hex'),
    topic: `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-vaults/providers/Microsoft.KeyVault/vaults/${vault}`,
    subject: keyName,
    eventType: `Microsoft.KeyVault.${type}`,
    eventTime: new Date().toISOString(),
    data: {
      Id: `https://${vault}.vault.azure.net/keys/${keyName}/${version}`,
      VaultName: vault,
      ObjectType: 'Key',
      ObjectName: keyName,
      Version: version,
      NBF: null,
      EXP: null,
    },
    dataVersion: '1',
    metadataVersion: '1',
  };
}

/** Delivers `event` now and every `everyMs` (round-robin over the webhooks) until stopped; resolves the latencies. */
export function ackLatencies(webhooks: readonly string[], event: EventGridEvent, everyMs: number) {
  const latencies: number[] = [];
  const failures: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  const deliver = () => {
    const url = webhooks[sent++ % webhooks.length]!;
    const started = performance.now();
    const delivery = fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'aeg-event-type': 'Notification' },
      body: JSON.stringify([event]),
    })
      .then(async (response) => {
        const text = await response.text();
        const ok = response.status >= 200 && response.status < 300;
        latencies.push(ok ? performance.now() - started : Infinity);
        if (!ok) failures.push(`HTTP ${response.status} ${text.slice(0, 200)}`);
      })
      .catch((error: unknown) => {
        latencies.push(Infinity);
        failures.push(error instanceof Error ? error.message : String(error));
      })
      .finally(() => inFlight.delete(delivery));
    inFlight.add(delivery);
  };
  deliver();
  const timer = setInterval(deliver, everyMs);
  return {
    answered: () => latencies.length,
    async stop(): Promise<{ latencies: number[]; failures: string[] }> {
      clearInterval(timer);
      await Promise.all(inFlight);
      return { latencies, failures };
    },
  };
}

/** The q-quantile (nearest rank); a failed delivery counts as infinitely slow. */
export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
}
