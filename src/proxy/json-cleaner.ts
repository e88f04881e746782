import type { BodyStage } from './secret-scrubber.js';

/**
 * Streaming removal of token fields (`AccessToken`, `refresh_token`, `id_token`, ... at any
 * depth, names plain or `\u`-escaped) from JSON, ndjson and JSONP, in bounded memory.
 *
 * It does not parse the whole document. In valid JSON an unescaped `"` followed by a name,
 * a `"`, optional blanks and a `:` can only open an object key (were the first quote a
 * closing one, the name would stand bare outside a string), and a `\u` can only be inside a
 * string, whose opening quote is the nearest unescaped one before it. So a token member is
 * recognised from its own few bytes, and only its value is then read with a small lexer
 * (depth, in-string, escape) that carries over chunk boundaries. Everything else is only
 * searched: a chunk with no `token"` (any case) and no `\u` passes through as a view of
 * itself, less a held-back tail of TAIL bytes, so a member split across chunks is still seen.
 *
 * A member is blanked out (spaces) with the comma before it, or, when it is
 * the first member, with the comma after it: valid input stays valid, and the length stays,
 * so a Content-Length stays true. Invalid JSON is cleaned as far as these rules
 * recognise members; the session's own tokens are removed by the secret scrubber anyway.
 */

export const TOKEN_FIELD = /^(?:access_?token|refresh_?token|id_?token)$/i;
/** Longest encoded name: `refresh_token` with every character `\u`-escaped is 78 bytes. */
const MAX_NAME_BYTES = 13 * 6;
/** Bytes kept back between chunks; covers `,` + blanks + a quoted escaped name + blanks + `:`. */
export const TAIL = 256;
const BLANK_LIMIT = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;

const isBlank = (b: number | undefined) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/** A quote is a delimiter when an even number of backslashes precedes it. */
function isUnescaped(buf: Uint8Array, i: number): boolean {
  let n = 0;
  while (i - 1 - n >= 0 && buf[i - 1 - n] === BACKSLASH) n++;
  return n % 2 === 0;
}

const PREFIXES = ['access_', 'access', 'refresh_', 'refresh', 'id_', 'id'].map((p) => Buffer.from(p));

function equalsFolded(buf: Uint8Array, at: number, lower: Uint8Array): boolean {
  for (let i = 0; i < lower.length; i++) {
    const want = lower[i] as number;
    const b = buf[at + i] as number;
    if (b !== want && !(want >= 0x61 && want <= 0x7a && (b | 0x20) === want)) return false;
  }
  return true;
}

/** Whether `token"` (any case) ends right at quote index q+5, i.e. `buf[q..q+5)` folds to `token`. */
function isTokenSuffix(buf: Uint8Array, q: number): boolean {
  return q >= 0 && ((buf[q] as number) | 0x20) === 0x74 && ((buf[q + 1] as number) | 0x20) === 0x6f && ((buf[q + 2] as number) | 0x20) === 0x6b && ((buf[q + 3] as number) | 0x20) === 0x65;
}

/**
 * `token"` in any case, or `\u`. Searched with a regular expression over a latin1 view
 * (one character per byte, so indexes match): a native search per hit of a common
 * two-byte needle such as `n"` costs more than the whole scan.
 */
const TRIGGER = /token"|\\u/gi;

/** Positions of candidate triggers: the `t` of `token"`, or the `\` of `\u`. */
function triggers(b: Buffer, from: number): number[] {
  const text = b.toString('latin1', from);
  const out: number[] = [];
  TRIGGER.lastIndex = 0;
  for (let m = TRIGGER.exec(text); m !== null; m = TRIGGER.exec(text)) out.push(from + m.index);
  return out;
}

function hasTrigger(b: Buffer): boolean {
  TRIGGER.lastIndex = 0;
  return TRIGGER.test(b.toString('latin1'));
}

function decodeName(buf: Uint8Array, start: number, end: number): string | null {
  let s = '';
  for (let i = start; i < end; i++) {
    const b = buf[i] as number;
    if (b !== BACKSLASH) {
      s += String.fromCharCode(b);
      continue;
    }
    const e = buf[++i];
    if (e === 0x75) {
      const hex = Buffer.from(buf.buffer, buf.byteOffset + i + 1, 4).toString('latin1');
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) return null;
      s += String.fromCharCode(parseInt(hex, 16));
      i += 4;
    } else if (e === QUOTE || e === BACKSLASH || e === 0x2f) s += String.fromCharCode(e);
    else s += '\u0000'; // \b \f \n \r \t: never part of a token name
  }
  return s;
}

type Analysis =
  | { kind: 'none' }
  | { kind: 'incomplete' }
  | { kind: 'member'; keyStart: number; removeFrom: number; afterKey: number; first: boolean };

/**
 * Is the trigger at t inside a token-field key? `base` is the window's absolute offset and
 * `droppedComma` the absolute offset of a comma already removed after a first member.
 */
function analyse(buf: Uint8Array, len: number, t: number, final: boolean, base: number, droppedComma: number): Analysis {
  let open = -1;
  let close = -1;
  if (buf[t] === BACKSLASH) {
    if (!isUnescaped(buf, t)) return { kind: 'none' }; // `\\u`: an escaped backslash, then u
    for (let i = t - 1; i >= 0 && t - i <= MAX_NAME_BYTES; i--) {
      if (buf[i] === QUOTE && isUnescaped(buf, i)) {
        open = i;
        break;
      }
    }
    if (open === -1) return { kind: 'none' };
    for (let i = t + 2; ; i++) {
      if (i - open > MAX_NAME_BYTES + 1) return { kind: 'none' };
      if (i >= len) return final ? { kind: 'none' } : { kind: 'incomplete' };
      if (buf[i] === QUOTE && isUnescaped(buf, i)) {
        close = i;
        break;
      }
    }
  } else {
    close = t + 5;
    for (const p of PREFIXES) {
      const o = t - p.length - 1;
      if (o >= 0 && buf[o] === QUOTE && equalsFolded(buf, o + 1, p) && isUnescaped(buf, o)) {
        open = o;
        break;
      }
    }
    if (open === -1) return { kind: 'none' };
  }
  const name = decodeName(buf, open + 1, close);
  if (name === null || !TOKEN_FIELD.test(name)) return { kind: 'none' };
  let c = close + 1;
  while (c < len && isBlank(buf[c]) && c - close <= BLANK_LIMIT) c++;
  if (c >= len) return final ? { kind: 'none' } : { kind: 'incomplete' };
  if (buf[c] !== COLON) return { kind: 'none' };
  let p = open - 1;
  while (p >= 0 && isBlank(buf[p]) && open - p <= BLANK_LIMIT) p--;
  if (p >= 0 && buf[p] === COMMA && base + p !== droppedComma) return { kind: 'member', keyStart: open, removeFrom: p, afterKey: close + 1, first: false };
  // After `{` (or a comma we already took away, or nothing we can see): take the comma after it.
  return { kind: 'member', keyStart: open, removeFrom: open, afterKey: close + 1, first: true };
}

/** The value of a removed member, read across chunks. */
interface Skip {
  phase: 'colon' | 'start' | 'string' | 'container' | 'scalar' | 'comma';
  depth: number;
  inString: boolean;
  escape: boolean;
  first: boolean;
}

/** The index of the quote that ends the string being read from `from`, or -1 (then `s.escape` carries over). */
function skipString(s: Skip, buf: Buffer, from: number, len: number): number {
  let i = from;
  if (s.escape) {
    s.escape = false;
    i++;
  }
  for (;;) {
    const q = i < len ? buf.indexOf(QUOTE, i) : -1;
    const stop = q === -1 ? len : q;
    let run = 0;
    while (stop - 1 - run >= i && buf[stop - 1 - run] === BACKSLASH) run++;
    if (q === -1) {
      s.escape = run % 2 === 1;
      return -1;
    }
    if (run % 2 === 0) return q;
    i = q + 1;
  }
}

/** Advances the skip over buf[from, len); returns where normal output resumes, or -1 if it ran out. */
function runSkip(s: Skip, buf: Buffer, from: number, len: number, base: number, onDroppedComma: (abs: number) => void): number {
  for (let i = from; i < len; i++) {
    const b = buf[i] as number;
    switch (s.phase) {
      case 'colon':
        if (b === COLON) s.phase = 'start';
        break;
      case 'start':
        if (isBlank(b)) break;
        if (b === QUOTE) s.phase = 'string';
        else if (b === 0x7b || b === 0x5b) {
          s.phase = 'container';
          s.depth = 1;
        } else s.phase = 'scalar';
        break;
      case 'string': {
        // Token values are long: jump from quote to quote natively.
        const q = skipString(s, buf, i, len);
        if (q === -1) return -1;
        s.phase = 'comma';
        i = q;
        break;
      }
      case 'container':
        if (s.inString) {
          if (s.escape) s.escape = false;
          else if (b === BACKSLASH) s.escape = true;
          else if (b === QUOTE) s.inString = false;
        } else if (b === QUOTE) s.inString = true;
        else if (b === 0x7b || b === 0x5b) s.depth++;
        else if (b === 0x7d || b === 0x5d) {
          if (--s.depth === 0) s.phase = 'comma';
        }
        break;
      case 'scalar':
        if (b === COMMA || b === 0x7d || b === 0x5d || isBlank(b)) {
          s.phase = 'comma';
          i--; // this byte belongs to what follows
        }
        break;
      case 'comma':
        if (!s.first) return i;
        if (isBlank(b)) break;
        if (b === COMMA) {
          onDroppedComma(base + i);
          return i + 1;
        }
        return i;
    }
  }
  return -1;
}

export interface JsonCleanerStats {
  /** Token members removed so far. */
  removed: number;
}

export function createJsonCleaner(stats: JsonCleanerStats = { removed: 0 }): BodyStage {
  let tail: Buffer = Buffer.alloc(0);
  let base = 0; // absolute offset of tail[0] (or of the next chunk when tail is empty)
  let skip: Skip | null = null;
  let droppedComma = -1;

  const slow = (data: Buffer, final: boolean): Buffer[] => {
    const len = data.length;
    const blanks: [number, number][] = [];
    let pos = 0;
    let cut = final ? len : Math.max(0, len - TAIL);
    const onDropped = (abs: number) => (droppedComma = abs);
    const resumeAt = (s: Skip, from: number, start: number): boolean => {
      const resume = runSkip(s, data, from, len, base, onDropped);
      blanks.push([start, resume === -1 ? len : resume]);
      if (resume === -1) {
        skip = s;
        cut = len;
        return false;
      }
      skip = null;
      pos = resume;
      return true;
    };
    let scanning = skip ? resumeAt(skip, 0, 0) : true;
    if (scanning) {
      for (const t of triggers(data, pos)) {
        if (t < pos) continue; // inside a member already blanked
        const a = analyse(data, len, t, final, base, droppedComma);
        if (a.kind === 'none') continue;
        if (a.kind === 'incomplete') {
          cut = Math.min(cut, t - TAIL);
          break;
        }
        stats.removed++;
        if (!resumeAt({ phase: 'colon', depth: 0, inString: false, escape: false, first: a.first }, a.afterKey, Math.max(a.removeFrom, pos))) break;
      }
    }
    cut = Math.max(cut, pos);
    let out = data.subarray(0, cut);
    if (blanks.length > 0) {
      // Blanked rather than cut out: the length stays, so a Content-Length stays true.
      out = Buffer.from(out);
      for (const [from, to] of blanks) {
        if (Math.min(to, cut) > from) out.fill(0x20, from, Math.min(to, cut));
      }
    }
    tail = cut < len ? Buffer.from(data.subarray(cut)) : Buffer.alloc(0);
    base += cut;
    return out.length > 0 ? [out] : [];
  };

  return {
    push(chunk) {
      if (chunk.length === 0) return [];
      // Fast path: nothing in this chunk, nor across the seam with the tail, can be a token member.
      // (The tail is checked again: a member found incomplete last time waits in it.)
      if (!skip && chunk.length > TAIL && !hasTrigger(chunk) && !hasTrigger(tail)) {
        const seam = tail.length > 0 ? Buffer.concat([tail.subarray(Math.max(0, tail.length - 8)), chunk.subarray(0, 8)]) : null;
        if (seam === null || !hasTrigger(seam)) {
          const out = tail.length > 0 ? [tail] : [];
          const cut = chunk.length - TAIL;
          out.push(chunk.subarray(0, cut));
          base += tail.length + cut;
          tail = Buffer.from(chunk.subarray(cut));
          return out;
        }
      }
      return slow(tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk, false);
    },
    end() {
      return tail.length > 0 ? slow(tail, true) : [];
    },
    get buffered() {
      return tail.length;
    },
  };
}

/**
 * One-shot form, for whole answers (proxy/exchange.ts) and tests: the same buffer, not a copy,
 * when nothing in it can start a token member (the usual answer), so a clean body costs one scan.
 */
export function cleanJson(body: Buffer): Buffer {
  if (!hasTrigger(body)) return body;
  const c = createJsonCleaner();
  return Buffer.concat([...c.push(body), ...c.end()]);
}
