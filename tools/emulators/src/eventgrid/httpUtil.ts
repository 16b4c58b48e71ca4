// Small HTTP helpers shared by the topic endpoint and the admin routes.
import type http from 'node:http';

/** Event Grid data-plane error body: `{ error: { code, message, details: [{ code, message }] } }`. */
export function sendEventGridError(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  detailCode: string = code,
): void {
  // Whatever the client still sends is read and dropped, so it sees the answer rather than a reset connection.
  req.resume();
  sendJson(res, status, { error: { code, message, details: [{ code: detailCode, message }] } });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** The body, or undefined when it is longer than `limit` bytes (the rest is read and dropped). */
export function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => resolve(size <= limit ? Buffer.concat(chunks) : undefined));
    req.on('error', reject);
  });
}

export function singleHeader(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
