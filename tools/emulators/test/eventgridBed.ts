// Test bed for the Event Grid emulator's webhook delivery: a subscriber endpoint that records what it receives and
// answers as told, and Key Vault events as the system topic publishes them.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { KeyVaultEventGridEvent } from '../src/contracts';
import { ensureDevCertificate } from '../src/tls';

export const tls = ensureDevCertificate(path.resolve('.data/test-tls'));

export interface RecordedRequest {
  method: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}
export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Answer this much later (an endpoint slower than Event Grid's deadline). */
  delayMs?: number;
}

/** A subscriber's endpoint: records every request and answers with `reply`. */
export async function startWebhook(reply: (request: RecordedRequest) => Reply, secure = false) {
  const requests: RecordedRequest[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded = { method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(recorded);
      const answer = reply(recorded);
      const send = () => {
        if (!res.destroyed) res.writeHead(answer.status, answer.headers).end(answer.body);
      };
      if (answer.delayMs) setTimeout(send, answer.delayMs);
      else send();
    });
  };
  const server = secure ? https.createServer({ cert: tls.cert, key: tls.key }, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${secure ? 'https' : 'http'}://127.0.0.1:${port}/api/updates?code=webhook-secret`,
    requests,
    notifications: () => requests.filter((r) => r.headers['aeg-event-type'] === 'Notification'),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Completes either handshake, then answers notifications with `statuses` in turn (the last one repeats). */
export function subscriber(...statuses: number[]) {
  let notification = 0;
  return (request: RecordedRequest): Reply => {
    if (request.method === 'OPTIONS') {
      return { status: 200, headers: { 'WebHook-Allowed-Origin': String(request.headers['webhook-request-origin']) } };
    }
    if (request.headers['aeg-event-type'] === 'SubscriptionValidation') {
      const [event] = JSON.parse(request.body) as { data: { validationCode: string } }[];
      return { status: 200, body: JSON.stringify({ validationResponse: event?.data.validationCode }) };
    }
    const status = statuses[Math.min(notification, statuses.length - 1)] ?? 200;
    notification += 1;
    return { status };
  };
}

export function keyVaultEvent(eventType = 'Microsoft.KeyVault.KeyNearExpiry'): KeyVaultEventGridEvent {
  return {
    id: randomUUID(),
    topic:
      '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/demo',
    subject: 'cmk-hub',
    eventType,
    eventTime: '2026-11-29T10:00:00.0000000Z',
    data: {
      Id: 'https://demo.vault.azure.net/keys/cmk-hub/0123456789abcdef0123456789abcdef',
      VaultName: 'demo',
      ObjectType: 'Key',
      ObjectName: 'cmk-hub',
      Version: '0123456789abcdef0123456789abcdef',
      NBF: null,
      EXP: 1798761600,
    },
    dataVersion: '1',
    metadataVersion: '1',
  };
}
