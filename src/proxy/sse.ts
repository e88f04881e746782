import { createSecretScrubber, scrubSecrets, type BodyStage, type SecretSet } from './secret-scrubber.js';

/**
 * Server-Sent Events, passed event by event: each event goes out as soon as the blank line
 * that ends it arrives, with the session's tokens scrubbed inside it (a token never spans a
 * blank line). Output bytes are the input bytes, cut at event ends.
 *
 * An event longer than `maxEventBytes` is not held whole: from then on until its end it goes
 * through the streaming scrubber, which holds back only a token's worth of bytes.
 */
export const MAX_EVENT_BYTES = 1 << 20;

const LF = 0x0a;
const CR = 0x0d;

/** Index just after the first blank line (two line ends in a row: LF, CR, or CRLF) at or after `from`, or -1. */
function eventEnd(buf: Buffer, from: number): number {
  for (let i = from; i < buf.length; i++) {
    const b = buf[i];
    if (b !== LF && b !== CR) continue;
    // i is a line end; does another line end follow right after it?
    let j = i + 1;
    if (b === CR && buf[j] === LF) j++;
    const c = buf[j];
    if (c === LF) return j + 1;
    if (c === CR) return buf[j + 1] === LF ? j + 2 : j + 1; // a CR at the very end: its LF, if any, goes with the next event
    i = j - 1;
  }
  return -1;
}

export function createSseFramer(set: SecretSet, maxEventBytes = MAX_EVENT_BYTES): BodyStage {
  // The event not finished yet: held whole (`pending`), or, once overlong, streamed through `overlong`.
  let pending: Buffer[] = [];
  let pendingSize = 0;
  let overlong: BodyStage | null = null;
  let open = false;
  let lastBytes: Buffer = Buffer.alloc(0); // its last two bytes, to find a blank line across the seam

  const hold = (part: Buffer, out: Buffer[]): void => {
    open = true;
    lastBytes = Buffer.from(part.length >= 2 ? part.subarray(part.length - 2) : Buffer.concat([lastBytes, part]).subarray(-2));
    if (overlong) {
      out.push(...overlong.push(part));
      return;
    }
    pending.push(part);
    pendingSize += part.length;
    if (pendingSize > maxEventBytes) {
      overlong = createSecretScrubber(set);
      out.push(...overlong.push(Buffer.concat(pending)));
      pending = [];
      pendingSize = 0;
    }
  };

  const finish = (last: Buffer, out: Buffer[]): void => {
    if (overlong) out.push(...overlong.push(last), ...overlong.end());
    else out.push(scrubSecrets(pending.length === 0 ? last : Buffer.concat([...pending, last]), set));
    pending = [];
    pendingSize = 0;
    overlong = null;
    open = false;
    lastBytes = Buffer.alloc(0);
  };

  return {
    push(chunk) {
      const out: Buffer[] = [];
      let at = 0;
      if (open) {
        // Only the seam and the new chunk are searched: what is held holds no blank line.
        const seam = Buffer.concat([lastBytes, chunk.subarray(0, 3)]);
        const e = eventEnd(seam, 0);
        const first = e > lastBytes.length ? e - lastBytes.length : eventEnd(chunk, 0);
        if (first === -1) {
          hold(chunk, out);
          return out;
        }
        finish(chunk.subarray(0, first), out);
        at = first;
      }
      for (;;) {
        const end = eventEnd(chunk, at);
        if (end === -1) break;
        out.push(scrubSecrets(chunk.subarray(at, end), set));
        at = end;
      }
      if (at < chunk.length) hold(chunk.subarray(at), out);
      return out;
    },
    end() {
      if (!open) return [];
      const out: Buffer[] = [];
      finish(Buffer.alloc(0), out);
      return out;
    },
    get buffered() {
      return pendingSize + (overlong?.buffered ?? 0);
    },
  };
}
