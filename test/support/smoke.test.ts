import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { startAzureProxy } from '@cmk-rotator/emulators/proxy';
import { ensureDevCertificate } from '@cmk-rotator/emulators/tls';

describe('test bed', () => {
  it('workers trust the emulator CA and reach a real host name through the proxy', async () => {
    const tls = ensureDevCertificate(path.resolve('.data/test-tls'));
    const server = https.createServer({ cert: tls.cert, key: tls.key }, (_req, res) => res.end('hello'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const proxy = await startAzureProxy({
      routes: [{ host: '*.vault.azure.net', port: (server.address() as AddressInfo).port }],
    });
    const { HttpsProxyAgent } = await import('https-proxy-agent');
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get('https://demo.vault.azure.net/', { agent: new HttpsProxyAgent(proxy.url) }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    expect(body).toBe('hello');
    await proxy.close();
    server.close();
  });

  it('Azurite is up for the suite', async () => {
    const table = TableClient.fromConnectionString(inject('storageConnectionString'), 'smoke', {
      allowInsecureConnection: true,
    });
    await table.createTable();
    await table.upsertEntity({ partitionKey: 'p', rowKey: 'r', value: 1 });
    expect((await table.getEntity<{ value: number }>('p', 'r')).value).toBe(1);
  });
});
