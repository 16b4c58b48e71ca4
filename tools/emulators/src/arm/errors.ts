// The two error bodies a client of Microsoft.Devices/IotHubs meets on the wire:
// - ARM's own (front door: authentication, throttling, api-version, routing, managed identities), the RPC
//   "Error Response Content": `{ "error": { "code", "message" } }`;
// - the IoT Hub resource provider's `ErrorDetails`, at the top level (iothub.json `default` responses):
//   `{ "code": "412001", "httpStatusCode": "PreconditionFailed", "message": "…" }`, with a numeric-string code and
//   the service's support suffix (correlation id, timestamp, `errorcode: IH<code>`) at the end of the message.
import { STATUS_CODES } from 'node:http';

export type ErrorShape = 'arm' | 'iothub';

/** What the answer needs to render an IoT Hub error's support suffix. */
export interface ErrorContext {
  requestId: string;
  now: Date;
}

export type ArmErrorBody = { error: { code: string; message: string } };
export interface IotHubErrorBody {
  code: string;
  httpStatusCode: string;
  message: string;
}

/** .NET's HttpStatusCode names ("PreconditionFailed" for 412), which the IoT Hub RP writes into httpStatusCode. */
function httpStatusName(status: number): string {
  if (status === 413) return 'RequestEntityTooLarge';
  return (STATUS_CODES[status] ?? 'Unknown').replace(/[^A-Za-z]/g, '');
}

export class ArmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly shape: ErrorShape = 'arm',
  ) {
    super(message);
    this.name = 'ArmError';
  }

  toBody(context: ErrorContext): ArmErrorBody | IotHubErrorBody {
    if (this.shape === 'arm') return { error: { code: this.code, message: this.message } };
    const stamp = context.now
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, 'Z');
    return {
      code: this.code,
      httpStatusCode: httpStatusName(this.status),
      message:
        `${this.message} If you contact a support representative please include this correlation identifier: ` +
        `${context.requestId}, timestamp: ${stamp}, errorcode: IH${this.code}.`,
    };
  }
}

/** An IoT Hub resource-provider error: `code` is the service's six-digit code (status × 1000 + reason). */
export function iotHubError(status: number, code: number, message: string, headers?: Record<string, string>): ArmError {
  return new ArmError(status, String(code), message, headers, 'iothub');
}

/** `properties.encryption.keyVaultProperties[0].keyIdentifier` from a zod/JSON path. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((segment, i) =>
      typeof segment === 'number' ? `[${segment}]` : i === 0 ? String(segment) : `.${String(segment)}`,
    )
    .join('');
}
