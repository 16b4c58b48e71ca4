// Keep-alive HTTPS through a CONNECT proxy, with the emulators' proxy and a real Azure SDK pipeline on loopback:
// many requests, one tunnel and one TLS handshake.
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createDefaultHttpClient, createPipelineFromOptions, createPipelineRequest } from '@azure/core-rest-pipeline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzureProxy } from '@cmk-rotator/emulators/proxy';
import type { RunningProxy } from '@cmk-rotator/emulators/proxy';
import { ensureDevCertificate } from '@cmk-rotator/emulators/tls';
import { ProxyTunnelAgent, bypassesProxy, keepAliveThroughProxy } from '../../src/adapters/proxyTunnel';

describe('which requests go through the proxy', () => {
  it('reads NO_PROXY as the Azure SDK does', () => {
    expect(bypassesProxy('management.azure.com', '')).toBe(false);
    expect(bypassesProxy('localhost', '127.0.0.1, localhost')).toBe(true);
    expect(bypassesProxy('demo.vault.azure.net', '.vault.azure.net')).toBe(true);
    expect(bypassesProxy('vault.azure.net', '.vault.azure.net')).toBe(true);
    expect(bypassesProxy('management.azure.com', 'azure.com')).toBe(false);
    expect(bypassesProxy('Management.Azure.com', '*')).toBe(true);
  });

  it('adds nothing without an http:// proxy in the environment', () => {
    expect(keepAliveThroughProxy({})).toEqual([]);
    expect(keepAliveThroughProxy({ HTTPS_PROXY: 'https://proxy.internal:8443' })).toEqual([]);
    expect(keepAliveThroughProxy({ https_proxy: 'http://127.0.0.1:3128' })).toHaveLength(1);
  });
});

describe('ProxyTunnelAgent', () => {
  let server: https.Server;
  let proxy: RunningProxy;
  let handshakes = 0;

  beforeAll(async () => {
    const tls = ensureDevCertificate(path.resolve('.data/test-tls'));
    server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
    });
    server.on('secureConnection', () => handshakes++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = await startAzureProxy({
      routes: [{ host: 'management.azure.com', port: (server.address() as AddressInfo).port }],
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('serves an SDK pipeline’s requests over one kept-alive tunnel', async () => {
    handshakes = 0;
    const pipeline = createPipelineFromOptions({});
    for (const { policy } of keepAliveThroughProxy({ HTTPS_PROXY: proxy.url })) {
      pipeline.addPolicy(policy, { afterPhase: 'Sign' });
    }
    const client = createDefaultHttpClient();
    for (const method of ['GET', 'PUT', 'GET', 'GET'] as const) {
      const response = await pipeline.sendRequest(
        client,
        createPipelineRequest({ url: 'https://management.azure.com/subscriptions/x', method, body: '{}' }),
      );
      expect(response.status).toBe(200);
      expect(response.bodyAsText).toBe('{"ok":true}');
    }
    expect(handshakes).toBe(1);
  });

  it('reports a proxy that refuses the tunnel', async () => {
    const agent = new ProxyTunnelAgent(new URL(proxy.url));
    const error = await new Promise<Error>((resolve) => {
      https.get('https://unrouted.example.com/', { agent }, () => resolve(new Error('answered'))).on('error', resolve);
    });
    expect(error.message).toBe('The proxy refused to tunnel to unrouted.example.com:443 (HTTP 403).');
    agent.destroy();
  });
});
