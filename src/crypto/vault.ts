import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Envelope encryption of secrets at rest (DESIGN.md section 1).
 *
 * Envelope: `v1.<keyVersion>.<nonce>.<ciphertext‖tag>` (base64url segments).
 * Each tenant gets its own AES-256-GCM key, derived with HKDF-SHA256 from the
 * master key, so a key extracted for one tenant says nothing about another.
 * The record a ciphertext belongs to is bound as additional authenticated data,
 * so a ciphertext copied to another row, column or tenant does not decrypt.
 */

/** Where a ciphertext lives; bound as AAD, so it must be identical when decrypting. */
export interface VaultBinding {
  tenantId: string;
  table: string;
  column: string;
  recordId: string;
}

export interface Vault {
  /** Id of the current master key. */
  readonly keyVersion: string;
  /** A self-describing envelope string. */
  encrypt(plaintext: string | Buffer, binding: VaultBinding): string;
  /** Throws VaultError on any failure, without saying which part failed. */
  decrypt(envelope: string, binding: VaultBinding): Buffer;
  decryptString(envelope: string, binding: VaultBinding): string;
  /** True when the envelope was made with the current master key. */
  isCurrent(envelope: string): boolean;
  /** Every envelope of the current master key starts with this, for `NOT startsWith` queries. */
  currentPrefix(): string;
}

export class VaultError extends Error {
  constructor(message = 'cannot decrypt vault envelope') {
    super(message);
    this.name = 'VaultError';
  }
}

const FORMAT = 'v1';
const MASTER_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HKDF_SALT = Buffer.from('idp vault hkdf salt v1');
// Signing keys and certificate chains are a few KiB; the cap keeps a hostile
// envelope from costing more than a bounded amount of decoding.
const MAX_PLAINTEXT_BYTES = 1024 * 1024;
const MAX_ENVELOPE_CHARS = Math.ceil(((MAX_PLAINTEXT_BYTES + TAG_BYTES) * 4) / 3) + 64;
const DERIVED_KEY_CACHE_SIZE = 1000;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** A short, stable id of a master key, so rotation needs no numbering and MASTER_KEY_PREVIOUS no order. */
export function masterKeyVersion(masterKey: Buffer): string {
  return createHmac('sha256', masterKey).update('idp vault key id').digest().subarray(0, 8).toString('hex');
}

export function createVault(opts: { masterKey: Buffer; previousMasterKeys?: readonly Buffer[] }): Vault {
  const current = checkedMasterKey(opts.masterKey);
  const keyVersion = masterKeyVersion(current);
  const masterKeys = new Map<string, Buffer>();
  for (const key of opts.previousMasterKeys ?? []) {
    const copy = checkedMasterKey(key);
    masterKeys.set(masterKeyVersion(copy), copy);
  }
  masterKeys.set(keyVersion, current);
  const tenantKey = createTenantKeyCache(masterKeys);
  const prefix = `${FORMAT}.${keyVersion}.`;

  const decrypt = (envelope: string, binding: VaultBinding): Buffer => {
    assertCompleteBinding(binding);
    const parsed = parseEnvelope(envelope);
    const key = parsed && tenantKey(parsed.keyVersion, binding.tenantId);
    if (!parsed || !key) throw new VaultError();
    return open(key, parsed, aad(parsed.keyVersion, binding));
  };

  return {
    keyVersion,
    encrypt(plaintext, binding) {
      assertCompleteBinding(binding);
      const data = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
      if (data.length > MAX_PLAINTEXT_BYTES) throw new VaultError(`plaintext larger than ${MAX_PLAINTEXT_BYTES} bytes`);
      const key = tenantKey(keyVersion, binding.tenantId);
      if (!key) throw new VaultError('current master key missing');
      return seal(key, keyVersion, data, aad(keyVersion, binding));
    },
    decrypt,
    decryptString(envelope, binding) {
      const plaintext = decrypt(envelope, binding);
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(plaintext);
      } catch {
        throw new VaultError('vault plaintext is not UTF-8 text');
      }
    },
    isCurrent: (envelope) => envelope.startsWith(prefix),
    currentPrefix: () => prefix,
  };
}

/** An empty field binds the ciphertext to nothing, usually because an id was not assigned yet. */
function assertCompleteBinding(binding: VaultBinding): void {
  const fields = [binding?.tenantId, binding?.table, binding?.column, binding?.recordId];
  if (!fields.every((field) => typeof field === 'string' && field.length > 0)) throw new VaultError('incomplete vault binding');
}

function checkedMasterKey(key: Buffer): Buffer {
  if (!Buffer.isBuffer(key) || key.length !== MASTER_KEY_BYTES) {
    throw new VaultError(`a vault master key must be ${MASTER_KEY_BYTES} bytes`);
  }
  // A private copy: the caller may reuse or wipe its buffer.
  return Buffer.from(key);
}

/** HKDF per (key version, tenant), memoised because it runs on every encrypt and decrypt. */
function createTenantKeyCache(masterKeys: ReadonlyMap<string, Buffer>) {
  const cache = new Map<string, Buffer>();
  return (keyVersion: string, tenantId: string): Buffer | undefined => {
    const masterKey = masterKeys.get(keyVersion);
    if (!masterKey) return undefined;
    const cacheKey = `${keyVersion}|${tenantId}`;
    let key = cache.get(cacheKey);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', masterKey, HKDF_SALT, `idp-vault|${tenantId}|${keyVersion}`, 32));
      // Thousands of tenants must not grow this without bound; the oldest entry goes first.
      if (cache.size >= DERIVED_KEY_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      cache.set(cacheKey, key);
    }
    return key;
  };
}

/** A JSON array is an unambiguous encoding: no choice of field values can collide with another. */
function aad(keyVersion: string, binding: VaultBinding): Buffer {
  return Buffer.from(JSON.stringify([FORMAT, keyVersion, binding.tenantId, binding.table, binding.column, binding.recordId]), 'utf8');
}

interface Envelope {
  keyVersion: string;
  nonce: Buffer;
  sealed: Buffer;
}

function seal(key: Buffer, keyVersion: string, plaintext: Buffer, additionalData: Buffer): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData);
  const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return [FORMAT, keyVersion, nonce.toString('base64url'), sealed.toString('base64url')].join('.');
}

function open(key: Buffer, envelope: Envelope, additionalData: Buffer): Buffer {
  const ciphertext = envelope.sealed.subarray(0, envelope.sealed.length - TAG_BYTES);
  const tag = envelope.sealed.subarray(envelope.sealed.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, envelope.nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(additionalData);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new VaultError();
  }
}

function parseEnvelope(envelope: unknown): Envelope | undefined {
  if (typeof envelope !== 'string' || envelope.length > MAX_ENVELOPE_CHARS) return undefined;
  const parts = envelope.split('.');
  if (parts.length !== 4) return undefined;
  const [format, keyVersion = '', nonceText = '', sealedText = ''] = parts;
  if (format !== FORMAT || !/^[0-9a-f]{16}$/.test(keyVersion)) return undefined;
  const nonce = decodeBase64url(nonceText);
  const sealed = decodeBase64url(sealedText);
  if (nonce?.length !== NONCE_BYTES || !sealed || sealed.length < TAG_BYTES) return undefined;
  return { keyVersion, nonce, sealed };
}

/** Strict: Node's decoder skips junk and ignores trailing bits, which would let an altered envelope still parse. */
function decodeBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}
