// Runs once before any test worker starts: trusts the emulators' CA in every worker and starts Azurite.
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startAzurite } from './azurite';
import { ensureDevCertificate } from './tls';

declare module 'vitest' {
  export interface ProvidedContext {
    storageConnectionString: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Workers are forked after this, so they start with the extended bundle (Node reads it only at start-up).
  const { trustBundlePath } = ensureDevCertificate(path.resolve('.data/test-tls'));
  process.env.NODE_EXTRA_CA_CERTS = trustBundlePath;
  const azurite = await startAzurite();
  project.provide('storageConnectionString', azurite.connectionString);
  return () => azurite.close();
}
