/** Exactly 1024 bytes of JSON that looks like an API answer and carries no token field. */
export function oneKilobyteJson(): Buffer {
  const items = Array.from({ length: 8 }, (_, i) => ({ id: 1000 + i, name: `Desk ${i + 1}`, floor: (i % 3) + 1, available: i % 2 === 0, price: 12.5 + i }));
  const base = { items, total: items.length, currency: 'GBP', pad: '' };
  const size = Buffer.byteLength(JSON.stringify(base));
  base.pad = 'x'.repeat(Math.max(0, 1024 - size));
  const buf = Buffer.from(JSON.stringify(base));
  if (buf.length !== 1024) throw new Error(`bench body is ${buf.length} bytes, not 1024`);
  return buf;
}
