import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

export interface Ceiling {
  /** Operations per second on all cores together. */
  perSecond: number;
  threads: number;
  durationS: number;
}

/**
 * Each worker signs back to back with node:crypto's one-shot sign (what jose,
 * and so oidc-provider, calls for RS256) until its time is up. Plain JavaScript
 * evaluated in the worker: no loader, nothing but the signing is measured.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createPrivateKey, sign } = require('node:crypto');
const key = createPrivateKey(workerData.pem);
const input = Buffer.from(workerData.input);
const started = performance.now();
const end = started + workerData.durationMs;
let count = 0;
while (performance.now() < end) {
  for (let i = 0; i < 8; i++) sign('sha256', input, key);
  count += 8;
}
parentPort.postMessage({ count, ms: performance.now() - started });
`;

/** A signing input the size of one of our access tokens' header and claims. */
function jwtSigningInput(): string {
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid: 'a'.repeat(36) })).toString('base64url');
  const claims = {
    iss: 'http://127.0.0.1:3000/t/bench-0001',
    sub: 'x'.repeat(22),
    aud: 'http://127.0.0.1:3000/t/bench-0001/api',
    exp: 1_900_000_900,
    iat: 1_900_000_000,
    jti: 'j'.repeat(43),
    client_id: 'c'.repeat(22),
    tid: '00000000-0000-4000-8000-000000000000',
  };
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
}

/** RS256 (RSA-2048, SHA-256) signatures per second, one worker thread per core. */
export async function measureRs256(durationS: number, threads: number): Promise<Ceiling> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const workerData = { pem, input: jwtSigningInput(), durationMs: durationS * 1000 };
  const results = await Promise.all(
    Array.from({ length: threads }, async () => {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
      const [message] = (await once(worker, 'message')) as [{ count: number; ms: number }];
      await worker.terminate();
      return message.count / (message.ms / 1000);
    }),
  );
  return { perSecond: results.reduce((sum, rate) => sum + rate, 0), threads, durationS };
}
