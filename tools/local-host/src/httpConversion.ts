// The HTTP trigger's wire shapes: the request as the host hands it to the Node.js worker (`RpcHttp`) and the
// worker's answer written back as the HTTP response.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { RpcHttpData, RpcInvocationResponse, RpcNullableString } from './coreApi';
import { UnsupportedByLocalHost } from './coreApi';
import type { WebhookReply } from './eventGrid';
import type { RegisteredFunction } from './registry';

/** The request as the host hands it to the Node.js worker (nullable dictionaries, lower-case headers, raw bytes). */
export function toRpcHttp(
  req: IncomingMessage,
  url: URL,
  body: Buffer,
  params: Record<string, string | null>,
): RpcHttpData {
  const nullableHeaders: Record<string, RpcNullableString> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    const value = req.rawHeaders[i + 1]!;
    const existing = nullableHeaders[name]?.value;
    nullableHeaders[name] = { value: existing === undefined || existing === null ? value : `${existing},${value}` };
  }
  const nullableQuery: Record<string, RpcNullableString> = {};
  for (const [name, value] of url.searchParams) {
    const existing = nullableQuery[name]?.value;
    nullableQuery[name] = { value: existing === undefined || existing === null ? value : `${existing},${value}` };
  }
  const nullableParams: Record<string, RpcNullableString> = {};
  for (const [name, value] of Object.entries(params)) if (value !== null) nullableParams[name] = { value };
  return {
    method: req.method ?? 'GET',
    url: url.toString(),
    nullableHeaders,
    nullableQuery,
    nullableParams,
    ...(body.length > 0 ? { body: { bytes: body } } : {}),
  };
}

/** The HTTP output binding's value: the return value (`$return`) or the named output the function set. */
export function httpOutput(fn: RegisteredFunction, response: RpcInvocationResponse): RpcHttpData | undefined {
  const output = Object.entries(fn.bindings).find(([, b]) => b.direction === 'out' && b.type.toLowerCase() === 'http');
  if (!output) return undefined;
  const data =
    output[0] === '$return' ? response.returnValue : response.outputData?.find((o) => o.name === output[0])?.data;
  return data?.http ?? undefined;
}

export function writeHttpResponse(res: ServerResponse, response: RpcHttpData | undefined): void {
  // No response from the function: the host answers 200 with no body.
  if (!response) return send(res, { status: 200 });
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    if (!['content-length', 'transfer-encoding', 'connection'].includes(name.toLowerCase())) headers[name] = value;
  }
  if ((response.cookies ?? []).length > 0) {
    throw new UnsupportedByLocalHost('The function answered with cookies; the local host does not set cookies.');
  }
  const body =
    response.body?.bytes ?? (typeof response.body?.string === 'string' ? Buffer.from(response.body.string) : undefined);
  res.writeHead(Number(response.statusCode ?? 200), headers);
  res.end(body ? Buffer.from(body) : undefined);
}

export function plain(status: number, body: string): WebhookReply {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body };
}

export function send(res: ServerResponse, reply: WebhookReply): void {
  res.writeHead(reply.status, reply.headers);
  res.end(reply.body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(value));
}
