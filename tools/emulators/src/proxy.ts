// An HTTPS CONNECT proxy that sends Azure's real host names to the local emulators.
// Clients keep their real URLs (https://<vault>.vault.azure.net, https://management.azure.com, ...) and only
// need HTTPS_PROXY (which every Azure SDK pipeline honours); hosts with no route are refused, never dialled.
import http from 'node:http';
import net from 'node:net';
import { listenOnLoopback } from './tcpPorts';

export interface ProxyRoute {
  /** `host` or `*.suffix` (matches any depth below the suffix). */
  host: string;
  /** Loopback port of the emulator that serves it. */
  port: number;
}

export interface RunningProxy {
  url: string;
  port: number;
  /**
   * Add or replace a route while running (emulators may start after the proxy). Tunnels already open on a replaced
   * route are cut, as an outage would cut them: kept-alive connections do not outlive the change.
   */
  setRoute(route: ProxyRoute): void;
  close(): Promise<void>;
}

export function matchesHost(pattern: string, host: string): boolean {
  const h = host.toLowerCase();
  const p = pattern.toLowerCase();
  return p.startsWith('*.') ? h.endsWith(p.slice(1)) : h === p;
}

export async function startAzureProxy(options: { port?: number; routes?: ProxyRoute[] } = {}): Promise<RunningProxy> {
  const routes = new Map<string, number>((options.routes ?? []).map((r) => [r.host.toLowerCase(), r.port]));
  const sockets = new Set<net.Socket>();
  /** Open tunnels (client side) by the route pattern they were sent through. */
  const tunnels = new Map<net.Socket, string>();
  const server = http.createServer((_req, res) => {
    res.writeHead(405, { 'content-type': 'text/plain' }).end('This proxy only tunnels HTTPS (CONNECT).\n');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const [host = '', portText = '443'] = (req.url ?? '').split(':');
    const route = [...routes.entries()].find(([pattern]) => matchesHost(pattern, host));
    if (!route || portText !== '443') {
      client.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\nNo emulator serves ${host}:${portText}.\n`);
      return;
    }
    tunnels.set(client, route[0]);
    const upstream = net.connect(route[1], '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => {
      tunnels.delete(client);
      upstream.destroy();
    });
  });
  const port = await listenOnLoopback(server, options.port ?? 0);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    setRoute: (r) => {
      const pattern = r.host.toLowerCase();
      routes.set(pattern, r.port);
      for (const [client, via] of tunnels) if (via === pattern) client.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
