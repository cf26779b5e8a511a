/**
 * UUIDv7 ids (RFC 9562): sortable by creation time, monotonic within one client.
 * Hand-rolled (20 lines) because every runtime we target has `crypto.getRandomValues` and
 * the `uuid` package would be our only reason to ship a dependency for it.
 */
let lastMs = 0;
let counter = 0;

/**
 * Random bytes from a pool refilled 4 KiB at a time: `crypto.getRandomValues` costs
 * microseconds per call in Node, and every event, call and message takes two draws.
 */
const pool = new Uint8Array(4096);
let poolAt = pool.length;

export function randomBytes(n: number): Uint8Array {
  if (poolAt + n > pool.length) {
    crypto.getRandomValues(pool);
    poolAt = 0;
  }
  const out = pool.slice(poolAt, poolAt + n);
  poolAt += n;
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
export const toHex = (bytes: Uint8Array): string => {
  let out = "";
  for (const b of bytes) out += HEX[b];
  return out;
};

export function uuidv7(now: number = Date.now()): string {
  const bytes = randomBytes(16);
  const ms = Math.max(now, lastMs);
  // 12-bit counter in rand_a keeps ids from one client ordered within a millisecond.
  counter = ms === lastMs ? counter + 1 : 0;
  const carry = counter > 0xfff ? 1 : 0;
  lastMs = ms + carry;
  if (carry) counter = 0;
  let t = lastMs;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = t % 256;
    t = Math.floor(t / 256);
  }
  bytes[6] = 0x70 | ((counter >> 8) & 0x0f);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | ((bytes[8] as number) & 0x3f);
  const hex = toHex(bytes);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
