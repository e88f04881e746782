import { brotliCompressSync, brotliDecompressSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from '@jest/globals';
import { chooseBrowserCoding, parseUpstreamCoding } from '../src/proxy/encoding.js';
import { applyBodyRequestRules, createBodyWriter, planResponse, type BodyPlan, type Headers, type ResponseSink } from '../src/proxy/response-body.js';
import { secretSet } from '../src/proxy/secret-scrubber.js';
import { createSseFramer } from '../src/proxy/sse.js';

const ACCESS = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl-_x';
const secrets = secretSet([ACCESS, 'refresh-token-value-1234']);

describe('choosing the browser coding', () => {
  const table: [string | undefined, string][] = [
    ['br, gzip', 'br'],
    ['gzip, deflate, br, zstd', 'br'],
    ['gzip', 'gzip'],
    ['GZIP', 'gzip'],
    ['x-gzip', 'gzip'],
    ['gzip;q=1, br;q=0.5', 'gzip'],
    ['br;q=0, gzip', 'gzip'],
    ['*', 'br'],
    ['br;q=0, *', 'gzip'],
    ['br;q=0, gzip;q=0', 'identity'],
    ['identity;q=0', 'identity'],
    ['deflate', 'identity'],
    ['', 'identity'],
    [undefined, 'identity'],
  ];
  it.each(table)('Accept-Encoding %p gets %s', (header, coding) => expect(chooseBrowserCoding(header)).toBe(coding));
});

describe('reading the upstream coding', () => {
  const table: [string | undefined, string[] | 'unknown'][] = [
    [undefined, []],
    ['identity', []],
    ['gzip', ['gzip']],
    ['x-gzip', ['gzip']],
    ['deflate, gzip', ['gzip', 'deflate']],
    ['gzip, br', ['br', 'gzip']],
    ['zstd', 'unknown'],
    ['gzip, compress', 'unknown'],
  ];
  it.each(table)('Content-Encoding %p decodes as %p', (header, list) => expect(parseUpstreamCoding(header)).toEqual(list));
});

describe('planning an answer', () => {
  const plan = (status: number, headers: Headers, acceptEncoding = 'br, gzip', method = 'GET') => planResponse({ method, status, headers, acceptEncoding, secrets });

  it('a_large_json_answer_is_compressed_for_a_browser_that_accepts_br', () => {
    const p = plan(200, { 'content-type': 'application/json', 'content-length': '5000', etag: '"v1"', 'accept-ranges': 'bytes' }) as BodyPlan;
    expect(p.kind).toBe('body');
    expect(p.encode).toBe('br');
    expect(p.headers['content-length']).toBeUndefined();
    expect(p.headers.vary).toBe('Accept-Encoding');
    expect(p.headers.etag).toBe('W/"v1"');
    expect(p.headers['accept-ranges']).toBeUndefined();
  });

  it('a_small_json_answer_keeps_its_length_and_is_sent_as_it_is', () => {
    const p = plan(200, { 'content-type': 'application/json', 'content-length': '100', vary: 'Origin' }) as BodyPlan;
    expect(p.encode).toBe('identity');
    expect(p.headers['content-length']).toBe('100');
    expect(p.headers.vary).toBe('Origin, Accept-Encoding');
  });

  it('an_answer_of_unknown_length_is_decided_on_its_first_bytes', () => {
    expect((plan(200, { 'content-type': 'text/plain' }) as BodyPlan).encode).toBe('decide');
    expect((plan(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': '40' }) as BodyPlan).encode).toBe('decide');
  });

  it('binary_and_event_streams_are_never_compressed', () => {
    expect((plan(200, { 'content-type': 'image/png', 'content-length': '90000' }) as BodyPlan).encode).toBe('identity');
    const sse = plan(200, { 'content-type': 'text/event-stream' }) as BodyPlan;
    expect(sse.encode).toBe('identity');
    expect(sse.stage).toBe('event-stream');
    expect(sse.headers['x-accel-buffering']).toBe('no');
  });

  it('an_unknown_upstream_coding_is_refused_as_it_cannot_be_checked', () => {
    expect(plan(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' }).kind).toBe('refuse');
  });

  it('headers_carrying_the_bearer_are_dropped_even_without_a_body', () => {
    const p = plan(302, { location: `https://evil/cb?token=${encodeURIComponent(ACCESS)}`, 'content-length': '0' }, 'gzip', 'HEAD');
    expect(p.kind).toBe('no-body');
    if (p.kind === 'no-body') expect(p.headers.location).toBeUndefined();
  });

  it('the_request_asks_upstream_for_whole_answers_only', () => {
    const h: Headers = { range: 'bytes=55-70', 'if-range': '"x"', 'accept-encoding': 'br', accept: 'application/json' };
    applyBodyRequestRules(h, 'identity');
    expect(h).toEqual({ 'accept-encoding': 'identity', accept: 'application/json' });
  });
});

/** A browser response that records what was written, and a controller that counts pauses. */
class FakeSink extends EventEmitter implements ResponseSink {
  status = 0;
  headers: Headers = {};
  chunks: Buffer[] = [];
  full = false;
  done: Promise<void>;
  private finish!: () => void;
  constructor() {
    super();
    this.done = new Promise((r) => (this.finish = r));
  }
  writeHead(status: number, headers: Headers) {
    this.status = status;
    this.headers = headers;
  }
  write(chunk: Buffer) {
    this.chunks.push(Buffer.from(chunk));
    return !this.full;
  }
  end() {
    this.finish();
  }
  body(): Buffer {
    const raw = Buffer.concat(this.chunks);
    const coding = this.headers['content-encoding'];
    if (coding === 'br') return brotliDecompressSync(raw);
    if (coding === 'gzip') return gunzipSync(raw);
    return raw;
  }
}

const encoders: Record<string, (b: Buffer) => Buffer> = {
  identity: (b) => b,
  gzip: (b) => gzipSync(b),
  deflate: (b) => deflateSync(b),
  br: (b) => brotliCompressSync(b),
  'gzip, br': (b) => brotliCompressSync(gzipSync(b)),
};

async function deliver(body: Buffer, upstreamHeaders: Headers, acceptEncoding: string, chunkSize = 4096) {
  const p = planResponse({ method: 'GET', status: 200, headers: upstreamHeaders, acceptEncoding, secrets });
  if (p.kind !== 'body') throw new Error(`expected a body plan, got ${p.kind}`);
  const sink = new FakeSink();
  let pauses = 0;
  const w = createBodyWriter(p, secrets, sink, { pause: () => pauses++, resume: () => undefined }, (err) => {
    throw err;
  });
  for (let at = 0; at < body.length; at += chunkSize) w.onData(body.subarray(at, at + chunkSize));
  w.onEnd();
  await sink.done;
  return { sink, pauses };
}

describe('carrying a body', () => {
  const doc = { user: { id: 7, AccessToken: ACCESS, name: 'x'.repeat(3000) }, echo: `Bearer ${ACCESS}`, list: Array.from({ length: 50 }, (_, i) => i) };
  const expected = { user: { id: 7, name: 'x'.repeat(3000) }, echo: 'Bearer [redacted]' };

  for (const upstream of Object.keys(encoders)) {
    for (const browser of ['br, gzip', 'gzip', 'identity;q=1, br;q=0, gzip;q=0']) {
      it(`upstream ${upstream} to a browser accepting "${browser}": cleaned, coded as asked`, async () => {
        const raw = Buffer.from(JSON.stringify(doc));
        const headers: Headers = { 'content-type': 'application/json; charset=utf-8' };
        if (upstream !== 'identity') headers['content-encoding'] = upstream;
        const { sink } = await deliver((encoders[upstream] as (b: Buffer) => Buffer)(raw), headers, browser);
        const want = browser.startsWith('br') ? 'br' : browser === 'gzip' ? 'gzip' : undefined;
        expect(sink.headers['content-encoding']).toBe(want);
        expect(sink.headers.vary).toBe('Accept-Encoding');
        const body = sink.body();
        expect(body.includes(ACCESS)).toBe(false);
        const parsed = JSON.parse(body.toString()) as { user: unknown; echo: string };
        expect(parsed.user).toEqual(expected.user);
        expect(parsed.echo.startsWith(expected.echo)).toBe(true);
      });
    }
  }

  it('a_short_text_answer_of_unknown_length_goes_out_uncompressed', async () => {
    const { sink } = await deliver(Buffer.from('ok'), { 'content-type': 'text/plain' }, 'br');
    expect(sink.headers['content-encoding']).toBeUndefined();
    expect(sink.body().toString()).toBe('ok');
  });

  it('an_html_page_echoing_the_bearer_is_scrubbed_and_keeps_its_length', async () => {
    const page = Buffer.from(`<html><body>${ACCESS}</body></html>`);
    const { sink } = await deliver(page, { 'content-type': 'text/html', 'content-length': String(page.length) }, 'identity');
    expect(sink.headers['content-length']).toBe(String(page.length));
    expect(sink.body().length).toBe(page.length);
    expect(sink.body().includes(ACCESS)).toBe(false);
  });

  it('a_20_MB_gzip_answer_to_a_br_browser_is_cleaned_with_bounded_stage_memory', async () => {
    const line = JSON.stringify({ id: 1, refresh_token: 'abc', text: 'y'.repeat(200) });
    const raw = Buffer.from(`[${Array.from({ length: Math.ceil((20 << 20) / line.length) }, () => line).join(',')}]`);
    const { sink } = await deliver(gzipSync(raw), { 'content-type': 'application/json', 'content-encoding': 'gzip' }, 'br', 65536);
    const out = sink.body();
    expect(out.length).toBe(raw.length);
    expect(out.includes('refresh_token')).toBe(false);
  });

  it('a_full_browser_socket_pauses_upstream', async () => {
    const p = planResponse({ method: 'GET', status: 200, headers: { 'content-type': 'application/octet-stream' }, acceptEncoding: 'br', secrets });
    if (p.kind !== 'body') throw new Error('body expected');
    const sink = new FakeSink();
    sink.full = true;
    const flow = { paused: 0, resumed: 0, pause() { this.paused++; }, resume() { this.resumed++; } };
    const w = createBodyWriter(p, secrets, sink, flow, () => undefined);
    w.onData(Buffer.alloc(100000, 1));
    expect(flow.paused).toBe(1);
    sink.full = false;
    sink.emit('drain');
    expect(flow.resumed).toBe(1);
    w.onEnd();
    await sink.done;
  });
});

describe('event streams', () => {
  const stream = `data: one\n\nid: 2\ndata: ${ACCESS}\r\n\r\ndata: three\r\rdata: four\n\n: comment\n\n`;

  it('each_event_leaves_as_soon_as_its_blank_line_arrives', () => {
    const f = createSseFramer(secrets);
    expect(f.push(Buffer.from('data: one\n'))).toEqual([]);
    expect(f.push(Buffer.from('\n')).map(String)).toEqual(['data: one\n\n']);
  });

  it('a_stream_split_at_every_boundary_is_passed_whole_event_by_event_and_scrubbed', () => {
    const buf = Buffer.from(stream);
    for (let i = 0; i <= buf.length; i++) {
      const f = createSseFramer(secrets);
      const out = [...f.push(buf.subarray(0, i)), ...f.push(buf.subarray(i)), ...f.end()];
      const text = Buffer.concat(out).toString();
      expect(text.length).toBe(stream.length);
      expect(text.includes(ACCESS)).toBe(false);
      expect(text.replace(/\[redacted\]\**/, ACCESS)).toBe(stream);
      // Pieces end only where events end (or where the cut was, for the unfinished one). A
      // CR that ends a chunk ends its event at once; a LF after it goes with the next one.
      let at = 0;
      for (const o of out) {
        at += o.length;
        const endsEvent = /(\n\n|\r\n\r\n|\r\r|\r\n\r)$/.test(buf.subarray(0, at).toString()) || at === i || at === buf.length;
        expect(endsEvent).toBe(true);
      }
    }
  });

  it('an_overlong_event_is_streamed_scrubbed_without_being_held_whole', () => {
    const f = createSseFramer(secrets, 1000);
    let max = 0;
    const out: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      out.push(...f.push(Buffer.from(`data: ${'z'.repeat(500)} ${ACCESS}\n`)));
      max = Math.max(max, f.buffered);
    }
    out.push(...f.push(Buffer.from('\n')), ...f.end());
    expect(max).toBeLessThanOrEqual(1000 + secrets.holdBack);
    expect(Buffer.concat(out).includes(ACCESS)).toBe(false);
  });
});
