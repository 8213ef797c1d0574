/**
 * IP addresses and CIDR ranges, IPv4 and IPv6, without a dependency.
 *
 * An address is a family and a bigint. IPv4-mapped IPv6 addresses
 * (`::ffff:10.1.2.3`, what a dual-stack socket reports for an IPv4 peer) are
 * read as the IPv4 address they carry, and a CIDR inside `::ffff:0:0/96` as the
 * IPv4 range it covers, so `10.0.0.0/8` matches a peer whichever way the socket
 * spells it.
 */

export type IpFamily = 4 | 6;

export interface IpAddress {
  family: IpFamily;
  value: bigint;
}

export interface Cidr {
  family: IpFamily;
  /** The network address (host bits zero). */
  network: bigint;
  prefix: number;
}

const BITS: Record<IpFamily, number> = { 4: 32, 6: 128 };
const DECIMAL_OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // No leading zeros: `010` is octal to some parsers and decimal to others.
    if (!DECIMAL_OCTET.test(part)) return undefined;
    value = (value << 8n) | BigInt(part);
  }
  return value;
}

function parseGroups(text: string, dottedTail: boolean): bigint[] | undefined {
  if (text === '') return [];
  const groups: bigint[] = [];
  const parts = text.split(':');
  for (const [index, part] of parts.entries()) {
    // The last part may be a dotted IPv4 address, worth two groups.
    if (dottedTail && index === parts.length - 1 && part.includes('.')) {
      const v4 = parseIpv4(part);
      if (v4 === undefined) return undefined;
      groups.push(v4 >> 16n, v4 & 0xffffn);
    } else if (HEX_GROUP.test(part)) {
      groups.push(BigInt(`0x${part}`));
    } else {
      return undefined;
    }
  }
  return groups;
}

function parseIpv6(text: string): bigint | undefined {
  // Zone ids (`fe80::1%eth0`) name an interface of this host: meaningless in an allowlist.
  if (text.includes('%') || text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = parseGroups(halves[0] ?? '', halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? '', true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...Array<bigint>(halves.length === 2 ? missing : 0).fill(0n), ...tail];
  return groups.reduce((value, group) => (value << 16n) | group, 0n);
}

/** The address IPv4-mapped IPv6 carries, or the address itself. */
function unmapped(address: IpAddress): IpAddress {
  if (address.family === 6 && address.value >> 32n === 0xffffn) return { family: 4, value: address.value & 0xffffffffn };
  return address;
}

/** Parses an IPv4 or IPv6 address (an IPv4-mapped one as IPv4); undefined when it is not one. */
export function parseIp(text: string): IpAddress | undefined {
  const trimmed = text.trim();
  const v4 = parseIpv4(trimmed);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const unbracketed = trimmed.startsWith('[') && trimmed.endsWith(']') ? trimmed.slice(1, -1) : trimmed;
  const v6 = parseIpv6(unbracketed);
  return v6 === undefined ? undefined : unmapped({ family: 6, value: v6 });
}

export class CidrError extends Error {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`${JSON.stringify(input.slice(0, 64))} is not a valid CIDR: ${reason}`);
    this.name = 'CidrError';
  }
}

function hostMask(family: IpFamily, prefix: number): bigint {
  return (1n << BigInt(BITS[family] - prefix)) - 1n;
}

/**
 * Parses `addr/prefix` (a bare address is a single host). Host bits must be
 * zero: `10.0.0.1/8` is more often a typo than a wish for `10.0.0.0/8`.
 */
export function parseCidr(text: string): Cidr {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const addressText = slash === -1 ? trimmed : trimmed.slice(0, slash);
  const prefixText = slash === -1 ? undefined : trimmed.slice(slash + 1);
  const v4 = parseIpv4(addressText);
  const v6 = v4 === undefined ? parseIpv6(addressText) : undefined;
  if (v4 === undefined && v6 === undefined) throw new CidrError(text, 'not an IPv4 or IPv6 address');
  const family: IpFamily = v4 === undefined ? 6 : 4;
  const value = v4 ?? (v6 as bigint);
  if (prefixText !== undefined && !/^(0|[1-9]\d{0,2})$/.test(prefixText)) throw new CidrError(text, 'the prefix length must be a number');
  const prefix = prefixText === undefined ? BITS[family] : Number(prefixText);
  if (prefix > BITS[family]) throw new CidrError(text, `the prefix length must be at most ${BITS[family]}`);
  if ((value & hostMask(family, prefix)) !== 0n) {
    const network = formatIp({ family, value: value & ~hostMask(family, prefix) });
    throw new CidrError(text, `host bits are set (did you mean ${network}/${prefix}?)`);
  }
  // A range inside ::ffff:0:0/96 is the IPv4 range it maps.
  if (family === 6 && prefix >= 96 && value >> 32n === 0xffffn) {
    return { family: 4, network: value & 0xffffffffn, prefix: prefix - 96 };
  }
  return { family, network: value, prefix };
}

export function isValidCidr(text: string): boolean {
  try {
    parseCidr(text);
    return true;
  } catch {
    return false;
  }
}

function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // RFC 5952: compress the longest run (of two or more) of zero groups, the first one on a tie.
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.length < 2) return hex.join(':');
  return `${hex.slice(0, best.start).join(':')}::${hex.slice(best.start + best.length).join(':')}`;
}

export function formatIp(address: IpAddress): string {
  if (address.family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((address.value >> shift) & 0xffn)).join('.');
  return formatIpv6(address.value);
}

/** The canonical spelling of a CIDR (`2001:db8::/32`, `10.0.0.0/8`), so stored lists compare and deduplicate. */
export function normalizeCidr(text: string): string {
  const cidr = parseCidr(text);
  return `${formatIp({ family: cidr.family, value: cidr.network })}/${cidr.prefix}`;
}

export function cidrContains(cidr: Cidr, address: IpAddress): boolean {
  const ip = unmapped(address);
  if (ip.family !== cidr.family) return false;
  return (ip.value & ~hostMask(cidr.family, cidr.prefix)) === cidr.network;
}

/** True when `ip` lies in any of `cidrs` (unparseable entries match nothing; an unparseable ip matches nothing). */
export function ipInAny(ip: string, cidrs: readonly string[]): boolean {
  const address = parseIp(ip);
  if (!address) return false;
  return cidrs.some((text) => {
    try {
      return cidrContains(parseCidr(text), address);
    } catch {
      return false;
    }
  });
}
