// Request parsing and error answers shared by the HTTP functions.
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import * as z from 'zod';
import { RotatorError, ValidationError, safeMessage } from '../domain/errors';
import type { FieldProblem } from '../domain/errors';
import { isKeyVersion, parseKeyId } from '../domain/keyId';
import type { KeyName, KeyRef } from '../domain/keyId';
import { confirmationProblem } from '../domain/lifecycle';
import { invocationLogger } from './logger';

const STATUS: Record<string, number> = {
  INVALID_INPUT: 400,
  VAULT_NOT_ALLOWED: 403,
  KEY_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  CONFIG_INVALID: 500,
  KEY_UNUSABLE: 409,
  NOT_REVOKED: 409,
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

/**
 * How operators prove who they are. With `entra-id`, App Service Authentication signs them in with Entra ID and
 * passes the principal in headers that no client can set; the routes are then anonymous to the Functions host (it
 * would still ask for a key) and each request must carry that principal. Otherwise the host checks a function key.
 * Read when the functions are registered; src/config.ts validates the value.
 */
export const operatorSignIn = process.env.ROTATOR_OPERATOR_AUTH?.trim() === 'entra-id';
export const operatorAuthLevel = operatorSignIn ? 'anonymous' : 'function';

/**
 * Runs an operator route's handler, answering every failure with a JSON error instead of a crash. With sign-in,
 * a request App Service did not authenticate (the setting on, the platform's authentication off) is refused.
 */
export function handled(
  work: (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>,
  { signIn = operatorSignIn }: { signIn?: boolean } = {},
): (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit> {
  return async (request, context) => {
    if (signIn && !request.headers.get('x-ms-client-principal-id')) {
      invocationLogger(context).warn('request.unauthenticated', { route: new URL(request.url).pathname });
      return {
        status: 401,
        jsonBody: {
          error: {
            code: 'SIGN_IN_REQUIRED',
            message: 'Sign in with Entra ID: App Service Authentication must be on in front of this app.',
            invocationId: context.invocationId,
          },
        },
      };
    }
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

/** A key named by URL, with its version when the URL has one. */
export const keyRefField = z
  .string({ error: 'is required: the key URL https://<vault>/keys/<name>' })
  .transform((value, ctx): KeyRef => {
    try {
      return parseKeyId(value);
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        message: error instanceof ValidationError ? (error.problems[0]?.message ?? '') : 'is invalid',
      });
      return z.NEVER;
    }
  });

/** A key named by URL; a version, if present, is ignored: these operations act on the key as a whole. */
export const keyIdField = keyRefField.transform(({ vaultUrl, name }): KeyName => ({ vaultUrl, name }));

export const versionField = z
  .string({ error: 'must be a string' })
  .refine(isKeyVersion, 'must be a key version (1-64 letters and digits)');

export const dryRunField = z.boolean({ error: 'must be true or false' });

/** The typed confirmation of a change that cuts hubs off: checked here for a 400 before any work. */
export function requireConfirmation(
  request: { keyId: KeyName; dryRun: boolean; confirm?: string | undefined },
  ctx: z.core.$RefinementCtx,
): void {
  if (request.dryRun) return;
  const problem = confirmationProblem(request.keyId, request.confirm);
  if (problem) ctx.addIssue({ code: 'custom', path: ['confirm'], message: problem });
}
