// Outbound HTTP(S) to subscribers' webhooks: one request with a hard limit on how long it may stay open, and a way to
// abort everything on close.
import http from 'node:http';
import https from 'node:https';

export interface WebhookResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** The endpoint did not answer within the time the request was allowed to stay open. */
export class WebhookTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`The endpoint did not respond within ${timeoutMs} ms.`);
    this.name = 'WebhookTimeoutError';
  }
}

/** Only loopback endpoints: the emulator never contacts anything else. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

/** The endpoint without its query string, which often carries a secret (e.g. a Functions key). */
export function redactedEndpoint(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

export class WebhookClient {
  private readonly httpAgent = new http.Agent({ keepAlive: true });
  private readonly httpsAgent = new https.Agent({ keepAlive: true });
  private readonly inFlight = new Set<http.ClientRequest>();

  /** Rejects with WebhookTimeoutError when no whole answer came within `timeoutMs`. */
  send(
    url: URL,
    method: 'POST' | 'OPTIONS',
    headers: Record<string, string>,
    body: string | undefined,
    timeoutMs: number,
  ): Promise<WebhookResponse> {
    const secure = url.protocol === 'https:';
    const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
    return new Promise<WebhookResponse>((resolve, reject) => {
      const request = (secure ? https : http).request(
        url,
        {
          method,
          agent: secure ? this.httpsAgent : this.httpAgent,
          headers: payload ? { ...headers, 'content-length': String(payload.length) } : headers,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () =>
            resolve({
              status: response.statusCode ?? 0,
              headers: response.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          response.on('error', reject);
        },
      );
      const deadline = setTimeout(() => request.destroy(new WebhookTimeoutError(timeoutMs)), timeoutMs);
      this.inFlight.add(request);
      request.on('close', () => {
        clearTimeout(deadline);
        this.inFlight.delete(request);
      });
      request.on('error', reject);
      request.end(payload);
    });
  }

  /** Aborts requests in flight and drops kept-alive sockets. */
  close(): void {
    for (const request of this.inFlight) request.destroy(new Error('Event Grid emulator closed.'));
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
