// The hub step message as it arrives from the queue trigger: validated before any use.
import * as z from 'zod';
import { ValidationError } from '../domain/errors';
import { isKeyVersion, normalizeVaultUrl } from '../domain/keyId';
import type { HubStepMessage } from '../domain/ports';

const StepMessage = z.strictObject({
  key: z.strictObject({
    vaultUrl: z
      .string()
      .max(300)
      .transform(
        (v, ctx) => normalizeVaultUrl(v) ?? (ctx.addIssue({ code: 'custom', message: 'is not a vault URL' }), z.NEVER),
      ),
    name: z.string().regex(/^[0-9a-zA-Z-]{1,127}$/, 'is not a key name'),
  }),
  targetVersion: z.string().refine(isKeyVersion, 'is not a key version'),
  hubs: z
    .array(
      z.strictObject({
        hubId: z.string().min(1).max(1024),
        step: z.number().int().min(0).max(1_000_000),
      }),
    )
    .min(1)
    .max(100),
});

/** The message, or a ValidationError naming every bad field. */
export function parseStepMessage(input: unknown): HubStepMessage {
  const parsed = StepMessage.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new ValidationError(
    parsed.error.issues.map((i) => ({ field: i.path.join('.') || 'message', message: i.message })),
  );
}
