// Request parsing and error answers shared by the HTTP functions.
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import * as z from 'zod';
import { RotatorError, ValidationError, safeMessage } from '../domain/errors';
import type { FieldProblem } from '../domain/errors';
import { parseKeyId } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import { invocationLogger } from './logger';

const STATUS: Record<string, number> = {
  INVALID_INPUT: 400,
  VAULT_NOT_ALLOWED: 403,
  KEY_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  CONFIG_INVALID: 500,
  KEY_UNUSABLE: 409,
  ACCESS_DENIED: 502,
  UPSTREAM_REJECTED: 502,
  HUB_UPDATE_FAILED: 502,
  HUB_KEY_NOT_APPLIED: 502,
};

/** Maps an error to the answer: 4xx for the caller's mistakes, 502 for Azure refusing us, 503 (retry) for transient. */
export function errorResponse(error: unknown, context: InvocationContext): HttpResponseInit {
  const body = (code: string, message: string, extra: object = {}) => ({
    error: { code, message, ...extra, invocationId: context.invocationId },
  });
  if (error instanceof RotatorError) {
    const status = error.transient ? 503 : (STATUS[error.code] ?? 500);
    // A 5xx is ours or Azure's to fix, not the caller's: it goes to the logs too.
    if (status >= 500)
      invocationLogger(context).error('request.failed', { errorCode: error.code, message: error.message });
    if (error.transient) {
      return { status, headers: { 'retry-after': '30' }, jsonBody: body(error.code, error.message) };
    }
    const details = error instanceof ValidationError ? { details: error.problems } : {};
    return { status, jsonBody: body(error.code, error.message, details) };
  }
  invocationLogger(context).error('request.failed', { message: safeMessage(error) });
  return { status: 500, jsonBody: body('INTERNAL', 'An unexpected error occurred; see the logs for this invocation.') };
}

/** Runs a handler, answering every failure with a JSON error instead of a crash. */
export function handled(
  work: (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>,
): (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit> {
  return async (request, context) => {
    try {
      return await work(request, context);
    } catch (error) {
      return errorResponse(error, context);
    }
  };
}

function problemsOf(error: z.ZodError): FieldProblem[] {
  return error.issues.flatMap((i) =>
    i.code === 'unrecognized_keys'
      ? i.keys.map((key) => ({ field: [...i.path, key].join('.'), message: 'is not a known field' }))
      : [{ field: i.path.join('.') || 'body', message: i.message }],
  );
}

/** The JSON body, validated; ValidationError names each bad field. */
export async function readBody<T extends z.ZodType>(request: HttpRequest, schema: T): Promise<z.infer<T>> {
  const text = await request.text();
  if (!text.trim()) throw new ValidationError([{ field: 'body', message: 'is required (a JSON object)' }]);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ValidationError([{ field: 'body', message: 'is not valid JSON' }]);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ValidationError(problemsOf(parsed.error));
  return parsed.data;
}

export function readQuery<T extends z.ZodType>(request: HttpRequest, schema: T): z.infer<T> {
  const parsed = schema.safeParse(Object.fromEntries(request.query.entries()));
  if (!parsed.success) throw new ValidationError(problemsOf(parsed.error));
  return parsed.data;
}

/** A key named by URL; a version, if present, is ignored: these operations act on the key as a whole. */
export const keyIdField = z
  .string({ error: 'is required: the key URL https://<vault>/keys/<name>' })
  .transform((value, ctx): KeyName => {
    try {
      const { vaultUrl, name } = parseKeyId(value);
      return { vaultUrl, name };
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        message: error instanceof ValidationError ? (error.problems[0]?.message ?? '') : 'is invalid',
      });
      return z.NEVER;
    }
  });
