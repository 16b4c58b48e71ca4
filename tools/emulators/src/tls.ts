// A local certificate authority and one server certificate for every emulator.
// Generated on first use with node:crypto + node-forge (no OpenSSL binary, no download), kept under the data folder.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';

/** Host names the emulators answer for: loopback plus Azure's own, so clients run with real URLs through the proxy. */
export const EMULATED_HOST_NAMES = [
  'localhost',
  '*.localhost',
  '*.vault.azure.net',
  'management.azure.com',
  '*.eventgrid.azure.net',
  '*.westeurope-1.eventgrid.azure.net',
  '*.blob.core.windows.net',
  '*.table.core.windows.net',
] as const;
const IP_ADDRESSES = ['127.0.0.1', '::1'];

export interface DevCertificate {
  /** PEM of the local CA (what clients must trust). */
  caPem: string;
  /** Server certificate chain and key, for `https.createServer`. */
  cert: string;
  key: string;
  /** A CA bundle = the bundle NODE_EXTRA_CA_CERTS named before (if any) + the local CA: pass it on as NODE_EXTRA_CA_CERTS. */
  trustBundlePath: string;
}

function fingerprint(): string {
  return createHash('sha256')
    .update(JSON.stringify([EMULATED_HOST_NAMES, IP_ADDRESSES, 2]))
    .digest('hex')
    .slice(0, 16);
}

function newKeyPair(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem);
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

function issue(): { caPem: string; cert: string; key: string } {
  const now = new Date();
  const ca = newKeyPair();
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = ca.publicKey;
  caCert.serialNumber = '01' + forge.util.bytesToHex(forge.random.getBytesSync(8));
  caCert.validity.notBefore = new Date(now.getTime() - 86_400_000);
  caCert.validity.notAfter = new Date(now.getTime() + 5 * 365 * 86_400_000);
  // A distinct name per CA: several data folders (sandbox, tests) may each have one, and trust bundles hold them side
  // by side; TLS picks the issuer by name.
  const caSubject = [
    {
      name: 'commonName',
      value: `cmk-rotator local emulator CA ${forge.util.bytesToHex(forge.random.getBytesSync(4))}`,
    },
  ];
  caCert.setSubject(caSubject);
  caCert.setIssuer(caSubject);
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  caCert.sign(ca.privateKey, forge.md.sha256.create());

  const leaf = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = leaf.publicKey;
  cert.serialNumber = '02' + forge.util.bytesToHex(forge.random.getBytesSync(8));
  cert.validity.notBefore = caCert.validity.notBefore;
  cert.validity.notAfter = new Date(now.getTime() + 2 * 365 * 86_400_000);
  cert.setSubject([{ name: 'commonName', value: 'localhost' }]);
  cert.setIssuer(caSubject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        ...EMULATED_HOST_NAMES.map((value) => ({ type: 2, value })),
        ...IP_ADDRESSES.map((ip) => ({ type: 7, ip })),
      ],
    },
  ]);
  cert.sign(ca.privateKey, forge.md.sha256.create());
  const caPem = forge.pki.certificateToPem(caCert);
  return { caPem, cert: forge.pki.certificateToPem(cert) + caPem, key: forge.pki.privateKeyToPem(leaf.privateKey) };
}

/**
 * Returns the emulators' certificate, creating it in `dir` on first use (and again when the host list changed).
 * `inheritedBundle` is the NODE_EXTRA_CA_CERTS the caller was started with: it is extended, never replaced.
 */
export function ensureDevCertificate(
  dir: string,
  inheritedBundle: string | undefined = process.env.NODE_EXTRA_CA_CERTS,
): DevCertificate {
  mkdirSync(dir, { recursive: true });
  const stateFile = path.join(dir, 'emulator-tls.json');
  let state: { fingerprint: string; caPem: string; cert: string; key: string } | undefined;
  if (existsSync(stateFile)) {
    const saved = JSON.parse(readFileSync(stateFile, 'utf8')) as typeof state;
    if (saved?.fingerprint === fingerprint()) state = saved;
  }
  if (!state) {
    state = { fingerprint: fingerprint(), ...issue() };
    writeFileSync(stateFile, JSON.stringify(state), { mode: 0o600 });
  }
  const caPath = path.join(dir, 'emulator-ca.pem');
  writeFileSync(caPath, state.caPem);
  const trustBundlePath = path.join(dir, 'trust-bundle.pem');
  // A process started with this very bundle (a child of one that made it) keeps it as it is.
  if (!inheritedBundle || path.resolve(inheritedBundle) !== trustBundlePath || !existsSync(trustBundlePath)) {
    const inherited = inheritedBundle && existsSync(inheritedBundle) ? readFileSync(inheritedBundle, 'utf8') : '';
    writeFileSync(trustBundlePath, `${inherited.trimEnd()}\n${state.caPem}`);
  }
  return { caPem: state.caPem, cert: state.cert, key: state.key, trustBundlePath };
}
