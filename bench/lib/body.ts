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

/** API-like JSON whose values vary (seeded), so compressing it costs what it does in life. */
export function variedJson(targetBytes: number): Buffer {
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const words = ['desk', 'office', 'meeting', 'room', 'window', 'park', 'quiet', 'team', 'booking', 'member', 'floor', 'coffee', 'light', 'north', 'south'];
  const items: string[] = [];
  let size = 2;
  for (let i = 0; size < targetBytes; i++) {
    const text = Array.from({ length: 6 + Math.floor(rnd() * 10) }, () => words[Math.floor(rnd() * words.length)]).join(' ');
    const item = JSON.stringify({ id: Math.floor(rnd() * 1e9), name: text.slice(0, 20), description: text, price: Math.round(rnd() * 10000) / 100, from: new Date(1.7e12 + rnd() * 1e10).toISOString(), ok: rnd() > 0.5 });
    items.push(item);
    size += item.length + 1;
  }
  return Buffer.from(`[${items.join(',')}]`);
}
