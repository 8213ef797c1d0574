import { describe, expect, it } from 'vitest';
import { CidrError, cidrContains, formatIp, ipInAny, isValidCidr, normalizeCidr, parseCidr, parseIp } from './ip.js';

describe('parseIp', () => {
  it.each([
    ['0.0.0.0', 4, 0n],
    ['255.255.255.255', 4, 0xffffffffn],
    ['10.1.2.3', 4, 0x0a010203n],
    ['::', 6, 0n],
    ['::1', 6, 1n],
    ['2001:db8::1', 6, 0x20010db8000000000000000000000001n],
    ['2001:DB8:0:0:0:0:0:1', 6, 0x20010db8000000000000000000000001n],
    ['fe80::', 6, 0xfe800000000000000000000000000000n],
    ['[2001:db8::2]', 6, 0x20010db8000000000000000000000002n],
    ['64:ff9b::192.0.2.33', 6, 0x0064ff9b0000000000000000c0000221n],
  ])('reads %s', (text, family, value) => {
    expect(parseIp(text)).toEqual({ family, value });
  });

  it('reads IPv4-mapped IPv6 as the IPv4 address it carries', () => {
    expect(parseIp('::ffff:10.1.2.3')).toEqual({ family: 4, value: 0x0a010203n });
    expect(parseIp('::ffff:a01:203')).toEqual({ family: 4, value: 0x0a010203n });
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '01.2.3.4',
    '1.2.3.-4',
    '1.2.3.4 5',
    '::1::',
    '1:::2',
    ':1',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '12345::',
    'g::1',
    'fe80::1%eth0',
    '1.2.3.4::1',
    '::ffff:1.2.3',
    'localhost',
  ])('refuses %j', (text) => {
    expect(parseIp(text)).toBeUndefined();
  });
});

describe('parseCidr', () => {
  it('reads a bare address as a single host', () => {
    expect(parseCidr('192.0.2.7')).toEqual({ family: 4, network: 0xc0000207n, prefix: 32 });
    expect(parseCidr('2001:db8::7')).toMatchObject({ family: 6, prefix: 128 });
  });

  it('reads an IPv4-mapped range as the IPv4 range', () => {
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ family: 4, network: 0x0a000000n, prefix: 8 });
  });

  it.each([
    ['10.0.0.1/8', /host bits are set \(did you mean 10\.0\.0\.0\/8\?\)/],
    ['10.0.0.0/33', /at most 32/],
    ['2001:db8::/129', /at most 128/],
    ['10.0.0.0/', /must be a number/],
    ['10.0.0.0/08', /must be a number/],
    ['10.0.0.0/-1', /must be a number/],
    ['10.0.0.0/8/8', /must be a number/],
    ['example.com/24', /not an IPv4 or IPv6 address/],
    ['*', /not an IPv4 or IPv6 address/],
  ])('refuses %s', (text, message) => {
    expect(() => parseCidr(text)).toThrow(CidrError);
    expect(() => parseCidr(text)).toThrow(message);
    expect(isValidCidr(text)).toBe(false);
  });

  it('normalises to one spelling', () => {
    expect(normalizeCidr('10.0.0.0/8')).toBe('10.0.0.0/8');
    expect(normalizeCidr(' 2001:DB8:0:0::/32 ')).toBe('2001:db8::/32');
    expect(normalizeCidr('2001:db8:0:0:1:0:0:0/80')).toBe('2001:db8:0:0:1::/80');
    expect(normalizeCidr('::ffff:192.0.2.0/120')).toBe('192.0.2.0/24');
    expect(normalizeCidr('::1')).toBe('::1/128');
    expect(normalizeCidr('0.0.0.0/0')).toBe('0.0.0.0/0');
  });
});

describe('matching', () => {
  it('matches the addresses of a range and no others', () => {
    const range = parseCidr('10.0.0.0/8');
    expect(cidrContains(range, { family: 4, value: 0x0a000000n })).toBe(true);
    expect(cidrContains(range, { family: 4, value: 0x0affffffn })).toBe(true);
    expect(cidrContains(range, { family: 4, value: 0x0b000000n })).toBe(false);
    expect(cidrContains(range, { family: 4, value: 0x09ffffffn })).toBe(false);
  });

  it('matches a peer whichever way a socket spells an IPv4 address', () => {
    expect(ipInAny('::ffff:127.0.0.1', ['127.0.0.0/8'])).toBe(true);
    expect(ipInAny('127.0.0.1', ['::ffff:127.0.0.0/104'])).toBe(true);
    expect(ipInAny('::ffff:10.0.0.1', ['127.0.0.0/8'])).toBe(false);
  });

  it('keeps the families apart otherwise', () => {
    expect(ipInAny('::1', ['0.0.0.0/0'])).toBe(false);
    expect(ipInAny('10.0.0.1', ['::/0'])).toBe(false);
    expect(ipInAny('::1', ['::/0'])).toBe(true);
    expect(ipInAny('2001:db8:ffff::1', ['2001:db8::/32'])).toBe(true);
    expect(ipInAny('2001:db9::1', ['2001:db8::/32'])).toBe(false);
  });

  it('handles /0 and host routes at both ends', () => {
    expect(ipInAny('255.255.255.255', ['0.0.0.0/0'])).toBe(true);
    expect(ipInAny('192.0.2.7', ['192.0.2.7/32'])).toBe(true);
    expect(ipInAny('192.0.2.8', ['192.0.2.7'])).toBe(false);
    expect(ipInAny('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127'])).toBe(true);
  });

  it('matches nothing for an unparseable address or entry', () => {
    expect(ipInAny('not-an-ip', ['0.0.0.0/0'])).toBe(false);
    expect(ipInAny('10.0.0.1', ['garbage', '10.0.0.1/8'])).toBe(false);
    expect(ipInAny('10.0.0.1', [])).toBe(false);
  });

  it('formats what it parses', () => {
    for (const text of ['0.0.0.0', '10.1.2.3', '::', '::1', '2001:db8::1', 'fe80::1:0:0:1', '1:0:0:2::3']) {
      const ip = parseIp(text);
      expect(ip && formatIp(ip)).toBe(text);
    }
  });
});
