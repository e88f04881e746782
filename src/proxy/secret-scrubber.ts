/**
 * Finds the session's own tokens in any byte stream, written plainly or with any of their
 * characters escaped, and replaces each occurrence. Runs on every answer body
 * whatever its content type (an upstream that echoes its request, an error page, XML, JSONP),
 * by `[redacted]` padded to the same length,
 * and on header values (token-headers.ts).
 *
 * Every character of a secret may appear as itself or as one "unit" of an escape:
 * `\u0041` (also behind 2 or 3 backslashes: JSON inside JSON), `\/` for `/`, `%41`, `&#65;`,
 * `&#x41;`. So an occurrence is at most MAX_UNIT bytes per character, and a stream needs to
 * hold back only `secretLength * MAX_UNIT - 1` bytes across a chunk boundary.
 *
 * Cost when nothing matches: one native `indexOf` per secret, plus one per escape-introducing
 * byte (`\`, `%`, `&#`) present; such a byte is dismissed after looking at a few neighbours.
 */

export const REDACTED = '[redacted]';

/**
 * As long as what it replaces (`[redacted]` then `*`s): a declared Content-Length stays true
 * and the text around it stays valid wherever the token was (a JSON string, a URL, XML).
 */
function redaction(length: number): Buffer {
  return Buffer.from(length >= REDACTED.length ? REDACTED + '*'.repeat(length - REDACTED.length) : '*'.repeat(length));
}
const MAX_UNIT = 8; // `\\\u0041` (JSON in JSON in JSON) and `&#x0041;` are the longest

const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const AMP = 0x26;
const HASH = 0x23;
const ENTITY = Buffer.from('&#');

function hexValue(b: number | undefined): number {
  if (b === undefined) return -1;
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  const l = b | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

/** One escape unit at `pos`: the character code it stands for and its length, or null. */
function decodeUnit(buf: Uint8Array, pos: number, end: number): { code: number; len: number } | null {
  const b = buf[pos];
  if (b === BACKSLASH) {
    let p = pos;
    while (p < end && buf[p] === BACKSLASH && p - pos < 3) p++;
    if (p >= end) return null;
    const next = buf[p];
    if (next === 0x2f) return { code: 0x2f, len: p + 1 - pos };
    if (next !== 0x75 || p + 5 > end) return null;
    const h0 = hexValue(buf[p + 1]);
    const h1 = hexValue(buf[p + 2]);
    const h2 = hexValue(buf[p + 3]);
    const h3 = hexValue(buf[p + 4]);
    if ((h0 | h1 | h2 | h3) < 0) return null;
    return { code: (h0 << 12) | (h1 << 8) | (h2 << 4) | h3, len: p + 5 - pos };
  }
  if (b === PERCENT) {
    const h0 = hexValue(buf[pos + 1]);
    const h1 = hexValue(buf[pos + 2]);
    if (pos + 3 > end || h0 < 0 || h1 < 0) return null;
    return { code: (h0 << 4) | h1, len: 3 };
  }
  if (b === AMP && buf[pos + 1] === HASH) {
    let p = pos + 2;
    const hex = buf[p] === 0x78 || buf[p] === 0x58;
    if (hex) p++;
    let code = 0;
    const digitsStart = p;
    while (p < end && p - digitsStart < (hex ? 4 : 5)) {
      const d = hex ? hexValue(buf[p]) : (buf[p] as number) - 0x30;
      if (d < 0 || d > (hex ? 15 : 9)) break;
      code = code * (hex ? 16 : 10) + d;
      p++;
    }
    if (p === digitsStart || p >= end || buf[p] !== 0x3b) return null;
    return { code, len: p + 1 - pos };
  }
  return null;
}

interface Secret {
  bytes: Buffer;
  /** The bytes as a latin1 string: how Node hands header values over. */
  text: string;
  /** For each character code, the indexes where it occurs in the secret. */
  positions: Map<number, number[]>;
}

function prepare(value: string): Secret | null {
  // Tokens are ASCII (JWTs, opaque base64/hex); a non-ASCII one is matched only as written.
  if (value.length < 8) return null; // too short to be a credential; would redact noise
  const bytes = Buffer.from(value, 'utf8');
  const positions = new Map<number, number[]>();
  if (bytes.length === value.length) {
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i] as number;
      const list = positions.get(c);
      if (list) list.push(i);
      else positions.set(c, [i]);
    }
  }
  return { bytes, text: bytes.toString('latin1'), positions };
}

/** Matches `secret` from index `j` on at `pos`, each character plain or escaped; the end or -1. */
function matchRest(buf: Uint8Array, pos: number, end: number, s: Uint8Array, j: number): number {
  let p = pos;
  for (; j < s.length; j++) {
    if (p >= end) return -1;
    const want = s[j] as number;
    const b = buf[p];
    if (b === want) {
      p++;
      continue;
    }
    if (b !== BACKSLASH && b !== PERCENT && b !== AMP) return -1;
    const unit = decodeUnit(buf, p, end);
    if (unit === null || unit.code !== want) return -1;
    p += unit.len;
  }
  return p;
}

type Range = [start: number, end: number];

/** Every occurrence in buf[0, end) of any secret, as sorted, non-overlapping ranges. */
export function findSecrets(buf: Uint8Array, secrets: readonly Secret[], end = buf.length): Range[] {
  const found: Range[] = [];
  const b = Buffer.from(buf.buffer, buf.byteOffset, end);
  for (const s of secrets) {
    // Written plainly: native search.
    for (let i = b.indexOf(s.bytes); i !== -1; i = b.indexOf(s.bytes, i + 1)) found.push([i, i + s.bytes.length]);
  }
  const firstBackslash = b.indexOf(BACKSLASH);
  const firstPercent = b.indexOf(PERCENT);
  const firstEntity = b.indexOf(ENTITY);
  // No byte that can start an escape: only plain occurrences were possible (the usual answer).
  if (firstBackslash === -1 && firstPercent === -1 && firstEntity === -1) return merge(found);
  const escapable = secrets.filter((s) => s.positions.size > 0);
  if (escapable.length === 0) return merge(found);
  // With at least one escaped character: start from the first escape of the occurrence,
  // whose plain prefix must then end right before it. One scan serves every secret.
  const tryEscapeAt = (p: number): void => {
    const unit = decodeUnit(buf, p, end);
    if (unit === null) return;
    for (const s of escapable) {
      const ks = s.positions.get(unit.code);
      if (!ks) continue;
      for (const k of ks) {
        const start = p - k;
        if (start < 0) break;
        if (k > 0 && buf[p - 1] !== s.bytes[k - 1]) continue;
        if (k > 1 && b.compare(s.bytes, 0, k, start, p) !== 0) continue;
        const stop = matchRest(buf, p + unit.len, end, s.bytes, k + 1);
        if (stop !== -1) found.push([start, stop]);
      }
    }
  };
  for (let i = firstBackslash; i !== -1; ) {
    tryEscapeAt(i);
    // A run of backslashes is one unit candidate: skip to its end.
    let j = i + 1;
    while (j < end && buf[j] === BACKSLASH) j++;
    i = j < end ? b.indexOf(BACKSLASH, j) : -1;
  }
  for (let i = firstPercent; i !== -1; i = b.indexOf(PERCENT, i + 1)) tryEscapeAt(i);
  for (let i = firstEntity; i !== -1; i = b.indexOf(ENTITY, i + 1)) tryEscapeAt(i);
  return merge(found);
}

function merge(found: Range[]): Range[] {
  if (found.length < 2) return found;
  found.sort((x, y) => x[0] - y[0] || y[1] - x[1]);
  const merged: Range[] = [found[0] as Range];
  for (let i = 1; i < found.length; i++) {
    const r = found[i] as Range;
    const last = merged[merged.length - 1] as Range;
    if (r[0] < last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push(r);
  }
  return merged;
}

function replaceRanges(buf: Buffer, ranges: readonly Range[], upTo: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const [s, e] of ranges) {
    if (s >= upTo) break;
    if (s > at) out.push(buf.subarray(at, s));
    out.push(redaction(e - s));
    at = e;
  }
  if (upTo > at) out.push(buf.subarray(at, upTo));
  return out;
}

export interface SecretSet {
  readonly secrets: readonly Secret[];
  /** Bytes a stream must hold back so that an occurrence split across chunks is still seen. */
  readonly holdBack: number;
}

/** Secrets shorter than 8 characters are ignored (they would redact ordinary words). */
export function secretSet(values: readonly (string | null | undefined)[]): SecretSet {
  const secrets = values.flatMap((v) => (v ? [prepare(v)] : [])).filter((s): s is Secret => s !== null);
  const longest = secrets.reduce((m, s) => Math.max(m, s.bytes.length), 0);
  return { secrets, holdBack: longest === 0 ? 0 : longest * MAX_UNIT - 1 };
}

/** One-shot: the same buffer when no secret is in it, else a copy with each one redacted. */
export function scrubSecrets(buf: Buffer, set: SecretSet): Buffer {
  if (set.secrets.length === 0) return buf;
  const ranges = findSecrets(buf, set.secrets);
  if (ranges.length === 0) return buf;
  return Buffer.concat(replaceRanges(buf, ranges, buf.length));
}

/** A byte that can start an escape unit (`\\`, `%`, `&#`): without one, only a plain occurrence can be there. */
const ESCAPE_START = /[\\%&]/;

/**
 * For header values (latin1 strings, as Node gives them). Most values have no escape at all,
 * and then a plain substring search is the whole answer: no buffer, no scan per escape byte.
 */
export function containsSecret(text: string, set: SecretSet): boolean {
  if (set.secrets.length === 0) return false;
  if (!ESCAPE_START.test(text)) return set.secrets.some((s) => text.includes(s.text));
  return findSecrets(Buffer.from(text, 'latin1'), set.secrets).length > 0;
}

/** A synchronous stage: push chunks in, get the chunks to pass on (no promise, no copy of clean bulk). */
export interface BodyStage {
  push(chunk: Buffer): Buffer[];
  end(): Buffer[];
  /** Bytes held inside the stage right now (tests assert that memory stays bounded). */
  readonly buffered: number;
}

/**
 * Streaming scrubber. Holds back the last `holdBack` bytes of what it has seen; the bulk of
 * every chunk is passed on as a view of the chunk itself.
 */
export function createSecretScrubber(set: SecretSet): BodyStage {
  const hold = set.holdBack;
  let tail: Buffer = Buffer.alloc(0);
  const run = (data: Buffer, final: boolean): Buffer[] => {
    let cut = final ? data.length : Math.max(0, data.length - hold);
    const ranges = findSecrets(data, set.secrets);
    // A match that starts before the cut is redacted now, even if it reaches past it.
    for (const [s, e] of ranges) if (s < cut && e > cut) cut = e;
    const out = replaceRanges(data, ranges, cut);
    // Copied: the tail must not keep the whole upstream chunk alive.
    tail = cut < data.length ? Buffer.from(data.subarray(cut)) : Buffer.alloc(0);
    return out;
  };
  /**
   * The held tail and a large chunk, without copying the chunk behind the tail: an occurrence
   * that starts in the tail is at most holdBack + 1 bytes long, so it ends within the seam
   * (the tail and the chunk's first holdBack bytes); every other one lies in the chunk itself.
   */
  const acrossSeam = (chunk: Buffer): Buffer[] => {
    const t = tail.length;
    const seam = Buffer.concat([tail, chunk.subarray(0, hold)]);
    const out: Buffer[] = [];
    let at = 0;
    for (const [s, e] of findSecrets(seam, set.secrets)) {
      if (s >= t) break;
      if (s > at) out.push(seam.subarray(at, s));
      out.push(redaction(e - s));
      at = e;
    }
    if (at < t) out.push(seam.subarray(at, t));
    out.push(...run(chunk.subarray(Math.max(0, at - t)), false));
    return out;
  };
  return {
    push(chunk) {
      if (hold === 0) return chunk.length > 0 ? [chunk] : [];
      if (tail.length === 0) return run(chunk, false);
      if (chunk.length > 4 * hold) return acrossSeam(chunk);
      return run(Buffer.concat([tail, chunk]), false);
    },
    end() {
      if (hold === 0 || tail.length === 0) return [];
      return run(tail, true);
    },
    get buffered() {
      return tail.length;
    },
  };
}
