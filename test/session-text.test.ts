import t from 'tap';
import {
  orderIdToString,
  parseOrderId,
  parseSessionHex,
  sessionFromBigInt,
  sessionToBigInt,
  sessionToHex,
} from '../src/codec/session.ts';
import { Prng } from './support/prng.ts';

// Text forms of the session token (16 lowercase hex digits) and of the order id (decimal uint64).

const MAX_U64 = (1n << 64n) - 1n;

t.test('sessionToHex pads both words and uses lowercase', async (tt) => {
  tt.equal(sessionToHex(0, 0), '0000000000000000');
  tt.equal(sessionToHex(0, 1), '0000000000000001');
  tt.equal(sessionToHex(1, 0), '0000000100000000');
  tt.equal(sessionToHex(0xdeadbeef, 0x0badf00d), 'deadbeef0badf00d');
  tt.equal(sessionToHex(0xffff_ffff, 0xffff_ffff), 'ffffffffffffffff');
  // Halves that went through a signed bitwise op still print as unsigned.
  tt.equal(sessionToHex(-1, -2), 'fffffffffffffffe');
});

t.test('parseSessionHex accepts exactly 16 lowercase hex digits', async (tt) => {
  tt.strictSame(parseSessionHex('0000000000000000'), { hi: 0, lo: 0 });
  tt.strictSame(parseSessionHex('deadbeef0badf00d'), { hi: 0xdeadbeef, lo: 0x0badf00d });
  tt.strictSame(parseSessionHex('ffffffffffffffff'), { hi: 0xffff_ffff, lo: 0xffff_ffff });
  tt.strictSame(parseSessionHex('8000000000000001'), { hi: 0x8000_0000, lo: 1 });
  const refused = [
    '',
    'deadbeef0badf00',
    'deadbeef0badf00d0',
    'DEADBEEF0BADF00D',
    'deadbeef0badF00d',
    'deadbeef0badf00g',
    '0xdeadbeef0badf0',
    ' deadbeef0badf00',
    'deadbeef-badf00d',
    '+eadbeef0badf00d',
    'deadbeef0badf0\u0660d',
  ];
  for (const s of refused) tt.equal(parseSessionHex(s), undefined, JSON.stringify(s));
});

t.test('hex and bigint forms round-trip', async (tt) => {
  const rnd = new Prng(0x5e55);
  const values = [0n, 1n, 0xffff_ffffn, 1n << 32n, 1n << 63n, MAX_U64];
  for (let i = 0; i < 200; i++) values.push(rnd.uint64());
  let good = 0;
  for (const v of values) {
    const { hi, lo } = sessionFromBigInt(v);
    const hex = sessionToHex(hi, lo);
    const back = parseSessionHex(hex);
    if (
      hex === v.toString(16).padStart(16, '0') &&
      back !== undefined &&
      back.hi === hi &&
      back.lo === lo &&
      sessionToBigInt(back.hi, back.lo) === v
    ) {
      good++;
    } else {
      tt.fail(`session ${v}`);
    }
  }
  tt.equal(good, values.length);
});

t.test('sessionFromBigInt splits into unsigned words and refuses non-uint64', async (tt) => {
  tt.strictSame(sessionFromBigInt(MAX_U64), { hi: 0xffff_ffff, lo: 0xffff_ffff });
  tt.strictSame(sessionFromBigInt(0x1_0000_0002n), { hi: 1, lo: 2 });
  tt.equal(sessionToBigInt(-1, -1), MAX_U64);
  tt.throws(() => sessionFromBigInt(-1n), new RangeError('session -1 is not a uint64'));
  tt.throws(() => sessionFromBigInt(1n << 64n), RangeError);
});

t.test('orderIdToString is exact over the whole uint64 range', async (tt) => {
  tt.equal(orderIdToString(0, 0), '0');
  tt.equal(orderIdToString(0, 0xffff_ffff), '4294967295');
  tt.equal(orderIdToString(1, 0), '4294967296');
  // Around 2^53, where the double fast path hands over to BigInt.
  tt.equal(orderIdToString(0x1f_ffff, 0xffff_ffff), '9007199254740991');
  tt.equal(orderIdToString(0x20_0000, 0), '9007199254740992');
  tt.equal(orderIdToString(0x20_0000, 1), '9007199254740993');
  tt.equal(orderIdToString(0xffff_ffff, 0xffff_ffff), '18446744073709551615');
  tt.equal(orderIdToString(-1, -1), '18446744073709551615');
  const rnd = new Prng(0x0d0d);
  let good = 0;
  for (let i = 0; i < 500; i++) {
    const v = rnd.uint64() >> BigInt(rnd.int(0, 63));
    const hi = Number(v >> 32n);
    const lo = Number(v & 0xffff_ffffn);
    if (orderIdToString(hi, lo) === v.toString()) good++;
    else tt.fail(`order ${v}`);
  }
  tt.equal(good, 500);
});

t.test('parseOrderId accepts 1-20 digits of a nonzero uint64', async (tt) => {
  tt.strictSame(parseOrderId('1'), { hi: 0, lo: 1 });
  tt.strictSame(parseOrderId('4294967296'), { hi: 1, lo: 0 });
  tt.strictSame(parseOrderId('9007199254740993'), { hi: 0x20_0000, lo: 1 });
  tt.strictSame(parseOrderId('18446744073709551615'), { hi: 0xffff_ffff, lo: 0xffff_ffff });
  // Leading zeros are digits like any other; the 20-character cap still holds.
  tt.strictSame(parseOrderId('00000000000000000042'), { hi: 0, lo: 42 });
  const refused = [
    '',
    '0',
    '00000000000000000000',
    '18446744073709551616',
    '99999999999999999999',
    '000000000000000000001',
    '-1',
    '+1',
    ' 1',
    '1 ',
    '1.0',
    '1e3',
    '0x10',
    '١٢',
    '12a',
  ];
  for (const s of refused) tt.equal(parseOrderId(s), undefined, JSON.stringify(s));
});

t.test('order id text round-trips', async (tt) => {
  const rnd = new Prng(0x04de);
  let good = 0;
  for (let i = 0; i < 500; i++) {
    const v = rnd.uint64() >> BigInt(rnd.int(0, 63)) || 1n;
    const s = v.toString();
    const parsed = parseOrderId(s);
    if (parsed !== undefined && orderIdToString(parsed.hi, parsed.lo) === s) good++;
    else tt.fail(`order ${s}`);
  }
  tt.equal(good, 500);
});
