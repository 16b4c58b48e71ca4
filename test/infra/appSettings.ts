// What the app reads from its settings, for the tests that check the templates set it.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../src/config';

/** Settings the app reads that the template leaves unset on purpose. */
export const NOT_SET_IN_AZURE: Record<string, string> = {
  ROTATOR_OUTCOME_TOPIC_KEY: 'the app publishes with its identity; a topic key would need local auth on the topic',
  AzureWebJobsStorage:
    'a connection string needs shared keys, which are off; the identity-based AzureWebJobsStorage__* are set',
  ROTATOR_IOTHUB_API_VERSION:
    'the code picks the IoT Hub api-version that carries encryption; override only to test one',
  ROTATOR_HUB_CLAIM_SECONDS: 'the default (600 s) outlasts the longest hub update the app waits for',
  ROTATOR_HUB_RETRY_SECONDS: 'the default backoff (30 s, then four times longer each attempt) suits Azure',
  ROTATOR_RETIRE_GRACE_DAYS: 'the default (7 days) is the documented grace period; a request may ask for another',
  ROTATOR_RETIRE_AFTER_DAYS: 'automatic retirement is opt-in: an operator turns it on once retire dry runs look right',
};

/** Names of the settings the app reads: its config schema (observed through loadConfig) and %...% binding expressions. */
export function settingsTheAppReads(): { read: Set<string>; required: string[] } {
  const read = new Set<string>();
  const env = new Proxy(
    {},
    {
      get: (_target, key) => {
        if (typeof key === 'string' && /^[A-Za-z_]\w*$/.test(key)) read.add(key);
        return undefined;
      },
    },
  ) as NodeJS.ProcessEnv;
  let required: string[] = [];
  try {
    loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    required = error.problems.map((p) => p.split(':')[0] ?? p);
  }
  for (const dir of ['functions', 'src']) {
    for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      if (!entry.endsWith('.ts')) continue;
      const source = readFileSync(path.join(dir, entry), 'utf8');
      for (const match of source.matchAll(/['"`]%(\w+)%['"`]|process\.env\.(\w+)|process\.env\[['"](\w+)['"]\]/g)) {
        const name = match[1] ?? match[2] ?? match[3];
        if (name) read.add(name);
      }
    }
  }
  return { read, required };
}
