// GET /api/keys: every key the service manages (referenced by a hub in the configured subscriptions, or in an
// allowed vault with a rotation policy), each with its versions, health and hubs per standing.
import { mapWithConcurrency } from '../domain/concurrency';
import { errorCode, safeMessage } from '../domain/errors';
import { keyIdentifiersOf } from '../domain/hubs';
import { keyLabel, keyUrl, tryParseKeyId } from '../domain/keyId';
import type { KeyName } from '../domain/keyId';
import type { HubStanding } from '../domain/keyHealth';
import type { HubDocument, RotationPolicy } from '../domain/ports';
import type { Dependencies } from './context';
import { describeKey, standingCounts } from './status';
import type { KeyStatus } from './status';

export type KeyOverview = Omit<KeyStatus, 'hubs'> & {
  vaultUrl: string;
  name: string;
  /** Hubs that use the key, by standing. */
  hubs: Record<HubStanding, number>;
  /** Whether the key carries a rotation policy of its own (else only hubs made it listed). */
  rotationPolicy: boolean;
};

/** A key that could not be read: listed with the reason, so one broken key does not hide the others. */
export interface KeyProblem {
  keyId: string;
  error: { code: string; message: string };
}

export interface KeyList {
  keys: KeyOverview[];
  problems: KeyProblem[];
  /** Keys that hubs reference in vaults this service may not manage (ROTATOR_ALLOWED_VAULTS). */
  unmanaged: { keyId: string; hubs: number }[];
}

/** Keys read at once: each costs a few Key Vault reads and a ledger read. */
const KEYS_AT_ONCE = 4;

export async function listKeys(deps: Dependencies): Promise<KeyList> {
  const allowed = new Set(deps.settings.allowedVaults);
  const hubsByKey = new Map<string, { key: KeyName; hubs: HubDocument[] }>();
  for (const hub of await deps.hubs.listAll()) {
    const seen = new Set<string>();
    for (const identifier of keyIdentifiersOf(hub.body)) {
      const ref = tryParseKeyId(identifier);
      if (typeof ref === 'string') continue;
      const label = keyLabel(ref);
      if (seen.has(label)) continue;
      seen.add(label);
      const entry = hubsByKey.get(label) ?? { key: { vaultUrl: ref.vaultUrl, name: ref.name }, hubs: [] };
      entry.hubs.push(hub);
      hubsByKey.set(label, entry);
    }
  }
  const problems: KeyProblem[] = [];
  // Every key of the allowed vaults has its policy read here once; describing a key reuses it.
  const policies = new Map<string, RotationPolicy | undefined>();
  const hasPolicy = (key: KeyName) => !!policies.get(keyLabel(key))?.createdOn;
  for (const vaultUrl of allowed) {
    try {
      const names = await deps.keyVault.listKeys(vaultUrl);
      await mapWithConcurrency(names, KEYS_AT_ONCE, async (key) => {
        policies.set(keyLabel(key), await deps.keyVault.getRotationPolicy(key));
      });
      for (const key of names) {
        if (hasPolicy(key) && !hubsByKey.has(keyLabel(key))) hubsByKey.set(keyLabel(key), { key, hubs: [] });
      }
    } catch (error) {
      problems.push({ keyId: vaultUrl, error: { code: errorCode(error), message: safeMessage(error) } });
    }
  }
  const entries = [...hubsByKey.values()].sort((a, b) => keyLabel(a.key).localeCompare(keyLabel(b.key)));
  const managed = entries.filter((e) => allowed.has(e.key.vaultUrl));
  const described = await mapWithConcurrency(managed, KEYS_AT_ONCE, async ({ key, hubs }) => {
    try {
      const label = keyLabel(key);
      const known = policies.has(label) ? { policy: policies.get(label) } : undefined;
      return overview(key, await describeKey(deps, key, hubs, known), hasPolicy(key));
    } catch (error) {
      problems.push({ keyId: keyUrl(key), error: { code: errorCode(error), message: safeMessage(error) } });
      return undefined;
    }
  });
  return {
    keys: described.filter((k) => k !== undefined),
    problems,
    unmanaged: entries
      .filter((e) => !allowed.has(e.key.vaultUrl))
      .map((e) => ({ keyId: keyUrl(e.key), hubs: e.hubs.length })),
  };
}

function overview(key: KeyName, status: KeyStatus, rotationPolicy: boolean): KeyOverview {
  return { ...status, vaultUrl: key.vaultUrl, name: key.name, hubs: standingCounts(status.hubs), rotationPolicy };
}
