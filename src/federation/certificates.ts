import { webcrypto, X509Certificate } from 'node:crypto';
import { loadX509 } from '../crypto/x509.js';

/**
 * X.509 helpers of the SAML side: our SP key pair per connection (it decrypts
 * encrypted assertions and may sign AuthnRequests) and reading the IdP's
 * certificates for the "test connection" report.
 */

const DAY_MS = 24 * 60 * 60 * 1000;
/** Long enough that IdP admins rarely re-import our metadata; rotating is deleting and recreating the key. */
const SP_CERTIFICATE_DAYS = 5 * 365;

const RSA_PARAMS = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
} as const;

export interface SpKeyPair {
  privateKeyPem: string;
  certificatePem: string;
}

/** A fresh RSA key and a self-signed certificate for it (SAML trusts the certificate as published, not a CA). */
export async function generateSpKeyPair(commonName: string, now: number, days = SP_CERTIFICATE_DAYS): Promise<SpKeyPair> {
  const x509 = await loadX509();
  const keys = (await webcrypto.subtle.generateKey(RSA_PARAMS, true, ['sign', 'verify'])) as CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      name: `CN=${commonName.replace(/[,=+<>#;"\\]/g, ' ').slice(0, 64)}`,
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + days * DAY_MS),
      signingAlgorithm: RSA_PARAMS,
      keys,
      extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true)],
    },
    webcrypto as unknown as Crypto,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { privateKeyPem: toPem(pkcs8.toString('base64'), 'PRIVATE KEY'), certificatePem: certificate.toString('pem') };
}

/** The base64 body of a certificate given as PEM or bare base64, without whitespace. */
export function certificateBody(certificate: string): string {
  return certificate
    .replace(/-----(BEGIN|END) CERTIFICATE-----/g, '')
    .replace(/\s+/g, '')
    .trim();
}

export function toPem(body: string, label: 'CERTIFICATE' | 'PRIVATE KEY' = 'CERTIFICATE'): string {
  const lines = certificateBody(body).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Null when `certificate` is not a parsable X.509 certificate. */
export function parseCertificate(certificate: string): X509Certificate | null {
  try {
    return new X509Certificate(toPem(certificate));
  } catch {
    return null;
  }
}

export interface CertificateSummary {
  subject: string;
  notBefore: string;
  notAfter: string;
  fingerprintSha256: string;
  /** Not valid at `now`: expired or not yet valid. */
  expired: boolean;
  /** Valid now but not `warnDays` from now. */
  expiresSoon: boolean;
}

export function summarizeCertificate(certificate: string, now: number, warnDays = 30): CertificateSummary | null {
  const parsed = parseCertificate(certificate);
  if (!parsed) return null;
  const notBefore = Date.parse(parsed.validFrom);
  const notAfter = Date.parse(parsed.validTo);
  const expired = now < notBefore || now >= notAfter;
  return {
    subject: parsed.subject.replace(/\n/g, ', '),
    notBefore: new Date(notBefore).toISOString(),
    notAfter: new Date(notAfter).toISOString(),
    fingerprintSha256: parsed.fingerprint256,
    expired,
    expiresSoon: !expired && notAfter - now < warnDays * DAY_MS,
  };
}
