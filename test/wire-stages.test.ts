/**
 * The streaming scrubber's seam path (a large chunk after a held tail is searched without
 * copying it behind the tail): byte for byte what the one-shot scrub gives, wherever the
 * chunks are cut and however the secrets are written.
 */
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { containsSecret, createSecretScrubber, scrubSecrets, secretSet } from '../src/proxy/secret-scrubber.js';

const ACCESS = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl-_x';
const REFRESH = 'rt_opaque-refresh-value-0123';
const set = secretSet([ACCESS, REFRESH]);

const writings = [
  (s: string) => s,
  (s: string) => Array.from(s, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
  (s: string) => Array.from(s, (c, i) => (i % 3 === 0 ? `%${c.charCodeAt(0).toString(16).toUpperCase()}` : c)).join(''),
  (s: string) => Array.from(s, (c, i) => (i % 2 === 0 ? `&#${c.charCodeAt(0)};` : c)).join(''),
];

describe('secret scrubber across large chunks', () => {
  it('streams_large_chunks_after_a_tail_exactly_as_the_one_shot_scrub_does', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 6000 }), fc.constantFrom(ACCESS, REFRESH), fc.integer({ min: 0, max: writings.length - 1 })), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 12 }),
        (inserts, cuts) => {
          let text = '';
          for (const [gap, secret, how] of inserts) text += `${'x\\'.repeat(gap >> 1)}"${(writings[how] as (s: string) => string)(secret)}"`;
          const whole = Buffer.from(text, 'latin1');
          const scrubber = createSecretScrubber(set);
          const out: Buffer[] = [];
          let at = 0;
          for (let i = 0; at < whole.length; i++) {
            const n = cuts[i % cuts.length] as number;
            out.push(...scrubber.push(whole.subarray(at, at + n)));
            at += n;
          }
          out.push(...scrubber.end());
          const streamed = Buffer.concat(out);
          expect(streamed.length).toBe(whole.length);
          expect(containsSecret(streamed.toString('latin1'), set)).toBe(false);
          expect(streamed.equals(scrubSecrets(whole, set))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
