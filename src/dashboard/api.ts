// The operator routes, called with the function key the operator brought (or, behind App Service Authentication,
// with the sign-in cookie the browser sends on its own).
import type { AuditPage, AuditRecord } from '../domain/ports';
import type { KeyList, KeyStatus, RotationReport } from '../application';

/** What JSON makes of a type: dates arrive as ISO strings. */
export type Wire<T> = T extends Date
  ? string
  : T extends (infer U)[]
    ? Wire<U>[]
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T;

export type AuditRecordView = Wire<AuditRecord>;
export type AuditPageView = Wire<AuditPage>;
export type { KeyList, KeyStatus, RotationReport };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface ErrorBody {
  error?: { code?: string; message?: string; details?: { field: string; message: string }[] };
}

export interface Api {
  get<T>(path: string, query?: Record<string, string | undefined>): Promise<T>;
  post<T>(path: string, body: unknown): Promise<T>;
}

export function createApi(functionKey: string | undefined): Api {
  const headers: Record<string, string> = functionKey ? { 'x-functions-key': functionKey } : {};
  async function call<T>(url: string, init: RequestInit): Promise<T> {
    let response: Response;
    try {
      response = await fetch(url, { ...init, headers: { ...headers, ...(init.headers as Record<string, string>) } });
    } catch {
      throw new ApiError(0, 'The function app could not be reached. Check the network and try again.');
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!response.ok) throw new ApiError(response.status, describeFailure(response, body as ErrorBody | undefined));
    return body as T;
  }
  return {
    get: (path, query = {}) => {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, value);
      const search = params.toString();
      return call(`/api/${path}${search ? `?${search}` : ''}`, { method: 'GET' });
    },
    post: (path, body) =>
      call(`/api/${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }),
  };
}

function describeFailure(response: Response, body: ErrorBody | undefined): string {
  const error = body?.error;
  if (response.status === 401) {
    return 'Not authorised: open the dashboard with ?code=<function key> (or sign in, where Entra ID is on).';
  }
  if (!error?.message) return `The app answered ${response.status} ${response.statusText}.`.trim();
  const fields = error.details?.map((d) => `${d.field} ${d.message}`).join('; ');
  return `${error.message}${fields ? ` (${fields})` : ''}${error.code ? ` [${error.code}]` : ''}`;
}
