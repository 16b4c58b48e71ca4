// infra/hooks/preprovision.sh against a fake `az` that answers from a script of canned replies and records calls.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const SUB_A = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa';
const SUB_B = 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb';
const ROLE_ID = `/subscriptions/${SUB_A}/providers/Microsoft.Authorization/roleDefinitions/1234`;
const PRINCIPAL = '99999999-9999-9999-9999-999999999999';

/** A reply: the first rule whose words all appear in the call, in order, answers (replies are used up in turn). */
interface Rule {
  when: string[];
  replies: string[];
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fake-az-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function runHook(
  rules: Rule[],
  env: Record<string, string>,
): { status: number | null; out: string; calls: string[][] } {
  writeFileSync(path.join(dir, 'rules.json'), JSON.stringify(rules));
  const fake = `#!/usr/bin/env node
const fs = require('fs');
const dir = ${JSON.stringify(dir)};
const args = process.argv.slice(2);
fs.appendFileSync(dir + '/calls.jsonl', JSON.stringify(args) + '\\n');
const rules = JSON.parse(fs.readFileSync(dir + '/rules.json', 'utf8'));
const rule = rules.find((r) => { let i = 0; return r.when.every((w) => (i = args.indexOf(w, i)) >= 0); });
const reply = rule ? (rule.replies.length > 1 ? rule.replies.shift() : rule.replies[0]) : '';
fs.writeFileSync(dir + '/rules.json', JSON.stringify(rules));
if (reply === 'FAIL') process.exit(1);
process.stdout.write(reply ? reply + '\\n' : '');
`;
  writeFileSync(path.join(dir, 'az'), fake);
  chmodSync(path.join(dir, 'az'), 0o755);
  const result = spawnSync('sh', ['infra/hooks/preprovision.sh'], {
    encoding: 'utf8',
    env: {
      PATH: `${dir}${path.delimiter}${process.env.PATH ?? ''}`,
      AZURE_ENV_NAME: 'cmk-prod',
      AZURE_LOCATION: 'westeurope',
      AZURE_SUBSCRIPTION_ID: SUB_A,
      ROTATOR_ROLE_WAIT_SECONDS: '0',
      ...env,
    },
  });
  let calls: string[][] = [];
  try {
    calls = readFileSync(path.join(dir, 'calls.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as string[]);
  } catch {
    calls = [];
  }
  return { status: result.status, out: `${result.stdout}${result.stderr}`, calls };
}

const registered: Rule = { when: ['provider', 'show'], replies: ['Registered'] };
const roleDeployed: Rule = { when: ['deployment', 'sub', 'create'], replies: ['guid-1'] };
const roleVisible: Rule = { when: ['role', 'definition', 'list'], replies: ['0', '1'] };
const deletes = (calls: string[][]): string[] =>
  calls.filter((c) => c[0] === 'role' && c[2] === 'delete').map((c) => c[c.indexOf('--ids') + 1]!);

describe('preprovision hook', () => {
  it('stops before anything is deployed when Microsoft.App is not registered, saying how to register it', () => {
    const { status, out, calls } = runHook([{ when: ['provider', 'show'], replies: ['NotRegistered'] }], {});
    expect(status).toBe(1);
    expect(out).toContain('Microsoft.App resource provider is "NotRegistered"');
    expect(out).toContain(`az provider register --namespace Microsoft.App --subscription ${SUB_A} --wait`);
    expect(calls.map((c) => c.slice(0, 2).join(' '))).toEqual(['provider show']);
  });

  it('creates the hub role from its module on a first provision and waits until each hub subscription sees it', () => {
    const { status, out, calls } = runHook([registered, roleDeployed, roleVisible], {
      ROTATOR_HUB_SUBSCRIPTION_IDS: ` ${SUB_A}, ${SUB_B.toUpperCase()} `,
    });
    expect(out).toContain('visible in 2 subscription(s)');
    expect(status).toBe(0);
    const deployment = calls.find((c) => c[0] === 'deployment')!;
    expect(deployment[deployment.indexOf('--template-file') + 1]).toMatch(/modules\/hub-key-updater-role\.bicep$/);
    expect(deployment).toEqual(
      expect.arrayContaining([
        'environmentName=cmk-prod',
        'location=westeurope',
        `hubSubscriptionIds= ${SUB_A}, ${SUB_B.toUpperCase()} `,
      ]),
    );
    const polls = calls.filter((c) => c[1] === 'definition').map((c) => c[c.indexOf('--scope') + 1]);
    expect(polls).toEqual([`/subscriptions/${SUB_A}`, `/subscriptions/${SUB_A}`, `/subscriptions/${SUB_B}`]);
    expect(deletes(calls)).toEqual([]);
  });

  it('removes what a narrowed scope no longer grants, and keeps the rest', () => {
    const rgA = `/subscriptions/${SUB_A}/resourceGroups/rg-iot`;
    const { status, out, calls } = runHook(
      [
        registered,
        {
          when: ['role', 'assignment', 'list', SUB_A, '--all'],
          replies: [`/subscriptions/${SUB_A}\tassignment-sub-a\n${rgA}\tassignment-rg-a`],
        },
        {
          when: ['role', 'assignment', 'list', SUB_B, '--all'],
          replies: [`/subscriptions/${SUB_B}\tassignment-sub-b`],
        },
        { when: ['role', 'assignment', 'list', SUB_B, 'acdd72a7'], replies: ['reader-b'] },
        { when: ['role', 'assignment', 'delete'], replies: [''] },
        roleDeployed,
        { when: ['role', 'definition', 'list'], replies: ['1'] },
      ].map((r) => ({
        ...r,
        when: r.when.map((w) => (w === 'acdd72a7' ? 'acdd72a7-3385-48ef-bd42-f606fba81ae7' : w)),
      })),
      {
        // Before: hubs anywhere in A and B. Now: only resource group rg-iot of A.
        HUB_KEY_UPDATER_ROLE_ID: ROLE_ID,
        AZURE_FUNCTION_PRINCIPAL_ID: PRINCIPAL,
        ROTATOR_SUBSCRIPTION_IDS: `${SUB_A},${SUB_B}`,
        ROTATOR_HUB_SUBSCRIPTION_IDS: SUB_A,
        ROTATOR_HUB_RESOURCE_GROUP_IDS: rgA.toUpperCase(),
      },
    );
    expect(out).toContain('preprovision: removing');
    expect(status).toBe(0);
    expect(deletes(calls).sort()).toEqual(['assignment-sub-a', 'assignment-sub-b', 'reader-b']);
    // The rotator's Reader on A stays: it still lists A's hubs. Only the rotator's assignments are asked for.
    const lists = calls.filter((c) => c[1] === 'assignment' && c[2] === 'list');
    expect(lists.every((c) => c.join(' ').includes(`[?principalId=='${PRINCIPAL}']`))).toBe(true);
    expect(lists.some((c) => c.includes(SUB_A) && c.includes('acdd72a7-3385-48ef-bd42-f606fba81ae7'))).toBe(false);
    // Cleanup comes before the role update, which would otherwise refuse to drop subscription B.
    const lastDelete = calls.map((c) => c[2]).lastIndexOf('delete');
    expect(calls.findIndex((c) => c[0] === 'deployment')).toBeGreaterThan(lastDelete);
  });
});
