/**
 * UUIDv7 ids (RFC 9562): sortable by creation time, monotonic within one client.
 * Hand-rolled (20 lines) because every runtime we target has `crypto.getRandomValues` and
 * the `uuid` package would be our only reason to ship a dependency for it.
 */
let lastMs = 0;
let counter = 0;

export function uuidv7(now: number = Date.now()): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
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
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
