/**
 * @peculiar/x509, loaded the first time a certificate is generated (a SAML
 * key or an SP key pair: admin actions, never a sign-in). With its ASN.1
 * schemas and tsyringe container it costs ~9 MB of resident memory, which an
 * idle server should not carry (issue 8).
 */
export async function loadX509(): Promise<typeof import('@peculiar/x509')> {
  // tsyringe, inside @peculiar/x509, refuses to load without the Reflect metadata polyfill in place first.
  await import('reflect-metadata');
  return import('@peculiar/x509');
}
