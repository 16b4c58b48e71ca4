// Keep-alive HTTPS through a CONNECT proxy. The Azure SDK honours HTTPS_PROXY with an agent that opens a new tunnel,
// and so makes a new TLS handshake, for every request: a fan-out of thousands of ARM calls then spends more CPU on
// handshakes than on its work. This agent tunnels the same way but keeps its connections for reuse, as Node's
// keep-alive agent does for direct ones, and resumes TLS sessions when a burst needs many at once. (https-proxy-agent,
// which the SDK uses, opens a tunnel per request even with keepAlive set.) Where no proxy is configured (Azure) none
// of this is used.
import http from 'node:http';
import https from 'node:https';
import type { RequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';

export class ProxyTunnelAgent extends https.Agent {
  private readonly authorization: string | undefined;
  private context: tls.SecureContext | undefined;
  private readonly sessions = new Map<string, Buffer>();

  constructor(private readonly proxy: URL) {
    super({ keepAlive: true });
    this.authorization = proxy.username
      ? `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`
      : undefined;
  }

  override createConnection(
    options: RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const target = `${options.host ?? options.hostname ?? 'localhost'}:${options.port ?? 443}`;
    const fail = (error: Error) => callback?.(error, undefined as unknown as Duplex);
    const connect = http.request({
      host: this.proxy.hostname,
      port: this.proxy.port || 80,
      method: 'CONNECT',
      path: target,
      headers: { host: target, ...(this.authorization ? { 'proxy-authorization': this.authorization } : {}) },
      agent: false,
    });
    connect.once('connect', (response, socket) => {
      if (response.statusCode !== 200) {
        socket.destroy();
        fail(new Error(`The proxy refused to tunnel to ${target} (HTTP ${response.statusCode}).`));
        return;
      }
      const servername = options.servername ?? options.host ?? undefined;
      const session = this.sessions.get(target);
      // One TLS context for all connections, and the latest session per target to resume.
      this.context ??= tls.createSecureContext();
      const secure = tls.connect({
        ...options,
        socket,
        secureContext: this.context,
        ...(servername ? { servername } : {}),
        ...(session ? { session } : {}),
      } as tls.ConnectionOptions);
      secure.on('session', (ticket: Buffer) => this.sessions.set(target, ticket));
      callback?.(null, secure);
    });
    connect.once('error', fail);
    connect.end();
    return undefined;
  }
}

/** One agent (one connection pool) per proxy for the whole process, shared by every client. */
const tunnels = new Map<string, ProxyTunnelAgent>();

/**
 * For an SDK client's `additionalPolicies`: sends the client's proxied requests through one shared keep-alive tunnel
 * agent instead of the SDK's. "Proxied" as the SDK reads the environment: the first of HTTPS_PROXY, ALL_PROXY,
 * HTTP_PROXY (either case), unless NO_PROXY exempts the host. Empty without an http:// proxy (an https:// proxy is
 * left to the SDK).
 */
export function keepAliveThroughProxy(
  env: NodeJS.ProcessEnv = process.env,
): { policy: PipelinePolicy; position: 'perRetry' }[] {
  const setting = (name: string) => env[name] || env[name.toLowerCase()] || undefined;
  const proxyUrl = setting('HTTPS_PROXY') ?? setting('ALL_PROXY') ?? setting('HTTP_PROXY');
  if (!proxyUrl || new URL(proxyUrl).protocol !== 'http:') return [];
  const noProxy = setting('NO_PROXY') ?? '';
  const agent = tunnels.get(proxyUrl) ?? new ProxyTunnelAgent(new URL(proxyUrl));
  tunnels.set(proxyUrl, agent);
  return [
    {
      // After the SDK's proxy policy, whose choice of agent this replaces.
      position: 'perRetry',
      policy: {
        name: 'keepAliveThroughProxyPolicy',
        sendRequest(request, next) {
          const url = new URL(request.url);
          // A client given its own proxy settings keeps them.
          const proxied = !request.proxySettings && url.protocol === 'https:' && !bypassesProxy(url.hostname, noProxy);
          if (proxied) request.agent = agent;
          return next(request);
        },
      },
    },
  ];
}

/** NO_PROXY as the Azure SDK reads it: `*`, exact host names, and `.suffix` for a domain and everything below it. */
export function bypassesProxy(host: string, noProxy: string): boolean {
  const name = host.toLowerCase();
  return noProxy
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean)
    .some(
      (entry) =>
        entry === '*' || entry === name || (entry.startsWith('.') && (name.endsWith(entry) || name === entry.slice(1))),
    );
}
