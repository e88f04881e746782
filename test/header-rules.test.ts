import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from '@jest/globals';
import { UPSTREAM_ACCEPT_ENCODING } from '../src/proxy/encoding.js';
import { requestHeadersToForward, responseHeadersToReturn } from '../src/proxy/header-rules.js';
import { applyBodyRequestRules } from '../src/proxy/response-body.js';

const TOKEN = 'at_test-access-token-0123456789';
const FORWARDED = { for: '203.0.113.7', proto: 'https', host: 'app.example.com' } as const;
const forward = (incoming: IncomingHttpHeaders, streamedBody = false) => requestHeadersToForward(incoming, { accessToken: TOKEN, streamedBody, forwarded: FORWARDED });

/** [rule, browser header, value]: none of these reaches upstream. */
const notForwarded: [string, string, string][] = [
  ['the browser cookie', 'cookie', 'cr.sid=s%3Aabc.def; theme=dark'],
  ['the browser authorization', 'authorization', 'Basic dXNlcjpwYXNz'],
  ['the anti-forgery marker', 'x-csrf', '1'],
  ['the browser host', 'host', 'app.example.com'],
  ['hop-by-hop connection', 'connection', 'keep-alive'],
  ['hop-by-hop keep-alive', 'keep-alive', 'timeout=5'],
  ['hop-by-hop proxy-authorization', 'proxy-authorization', 'Basic cHJveHk6c2VjcmV0'],
  ['hop-by-hop proxy-connection', 'proxy-connection', 'keep-alive'],
  ['hop-by-hop te', 'te', 'trailers'],
  ['hop-by-hop trailer', 'trailer', 'x-after'],
  ['hop-by-hop transfer-encoding', 'transfer-encoding', 'chunked'],
  ['hop-by-hop upgrade', 'upgrade', 'h2c'],
  ['expect, answered here', 'expect', '100-continue'],
  ['content-length of a buffered body, set by the client', 'content-length', '12'],
  ['a path override', 'x-original-url', '/api/token'],
  ['a rewrite override', 'x-rewrite-url', '/api/token'],
  ['a method override', 'x-http-method-override', 'DELETE'],
  ['a method override (x-http-method)', 'x-http-method', 'DELETE'],
  ['a method override (x-method-override)', 'x-method-override', 'DELETE'],
  ['forwarded', 'forwarded', 'for=10.0.0.1;proto=https;host=admin.internal'],
  ['the real ip', 'x-real-ip', '10.0.0.1'],
  ['a client_id', 'client_id', 'someone-elses-client'],
  ['cookie2', 'cookie2', '$Version="1"'],
  ['x-forwarded-port', 'x-forwarded-port', '8443'],
  ['x-forwarded-prefix', 'x-forwarded-prefix', '/admin'],
  ['x-forwarded-server', 'x-forwarded-server', 'internal'],
  ['a name with an underscore', 'x_forwarded_for', '10.0.0.1'],
  ['another name with an underscore', 'x_original_url', '/api/token'],
  ['an application name with an underscore', 'x_tenant', 'other'],
];

/** [rule, browser header, value]: these reach upstream unchanged. */
const forwarded: [string, string, string][] = [
  ['accept', 'accept', 'application/json'],
  ['content-type', 'content-type', 'application/json; charset=utf-8'],
  ['a trace context', 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'],
  ['an application header', 'x-tenant', 'coworking-1'],
  ['accept-language', 'accept-language', 'de-CH'],
  ['a conditional request', 'if-none-match', '"v1"'],
  // These two pass the general rules; the body rules below then settle them.
  ['a range', 'range', 'bytes=0-99'],
  ['the browser accept-encoding', 'accept-encoding', 'br, gzip'],
];

describe('request headers to forward', () => {
  it.each(notForwarded)('%s is not forwarded', (_rule, name, value) => {
    const out = forward({ [name]: value });
    // Authorization is replaced by the session's bearer rather than dropped.
    if (name === 'authorization') expect(out.authorization).toBe(`Bearer ${TOKEN}`);
    else expect(out).not.toHaveProperty(name);
  });

  it.each(forwarded)('%s is forwarded unchanged', (_rule, name, value) => {
    expect(forward({ [name]: value })[name]).toBe(value);
  });

  it('sets x-forwarded-for, -proto and -host from what cloakroom decided, never the browser values', () => {
    const out = forward({ 'x-forwarded-for': '10.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'admin.internal' });
    expect(out['x-forwarded-for']).toBe('203.0.113.7');
    expect(out['x-forwarded-proto']).toBe('https');
    expect(out['x-forwarded-host']).toBe('app.example.com');
    expect(forward({})['x-forwarded-for']).toBe('203.0.113.7');
  });

  it('sends_the_request_id_cloakroom_chose_never_the_browser_header_as_such', () => {
    expect(forward({ 'x-request-id': 'from browser\r\nx: y' })).not.toHaveProperty('x-request-id');
    const out = requestHeadersToForward({ 'x-request-id': 'other' }, { accessToken: TOKEN, streamedBody: false, forwarded: FORWARDED, requestId: 'chosen-1' });
    expect(out['x-request-id']).toBe('chosen-1');
  });

  it.each([
    ['not the W3C form', 'garbage'],
    ['upper-case hex', '00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01'],
    ['an all-zero trace id', '00-00000000000000000000000000000000-b7ad6b7169203331-01'],
    ['an unknown version', 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'],
  ])('a_traceparent_that_is_%s_is_not_forwarded', (_why, value) => {
    expect(forward({ traceparent: value })).not.toHaveProperty('traceparent');
  });

  it('with_tracing_on_the_browser_trace_context_is_left_to_the_tracer', () => {
    const out = requestHeadersToForward(
      { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'a=b' },
      { accessToken: TOKEN, streamedBody: false, forwarded: FORWARDED, tracing: true },
    );
    expect(out).not.toHaveProperty('traceparent');
    expect(out).not.toHaveProperty('tracestate');
  });

  it('adds the session bearer whatever the browser sent', () => {
    expect(forward({}).authorization).toBe(`Bearer ${TOKEN}`);
    expect(forward({ authorization: 'Bearer at_someone-else' }).authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('drops every header the Connection header names, whatever its case and spacing', () => {
    const out = forward({ connection: 'close, X-Secret-Hop ,x-other', 'x-secret-hop': '1', 'x-other': '2', 'x-kept': '3' });
    expect(out).not.toHaveProperty('x-secret-hop');
    expect(out).not.toHaveProperty('x-other');
    expect(out['x-kept']).toBe('3');
  });

  it('keeps the declared length of a body that streams through', () => {
    expect(forward({ 'content-length': '2097152' }, true)['content-length']).toBe('2097152');
  });

  it('with the body rules after them, no range reaches upstream and only codings cloakroom decodes are asked for', () => {
    const out = forward({ range: 'bytes=55-70', 'if-range': '"v1"', 'accept-encoding': 'zstd, br, gzip', accept: 'application/json' });
    applyBodyRequestRules(out, UPSTREAM_ACCEPT_ENCODING);
    expect(out).not.toHaveProperty('range');
    expect(out).not.toHaveProperty('if-range');
    expect(out['accept-encoding']).toBe('identity');
    expect(out.accept).toBe('application/json');
  });

  it('keeps repeated values as a list', () => {
    expect(forward({ 'x-multi': ['a', 'b'] })['x-multi']).toEqual(['a', 'b']);
  });
});

/** [rule, upstream header, value]: none of these reaches the browser. */
const notReturned: [string, string, string | string[]][] = [
  ['upstream set-cookie', 'set-cookie', ['sid=upstream; Path=/']],
  ['upstream set-cookie2', 'set-cookie2', 'sid=upstream'],
  ['an upstream request id (the browser gets its own)', 'x-request-id', 'upstream-42'],
  ['hop-by-hop connection', 'connection', 'keep-alive'],
  ['hop-by-hop keep-alive', 'keep-alive', 'timeout=5'],
  ['hop-by-hop transfer-encoding', 'transfer-encoding', 'chunked'],
  ['hop-by-hop proxy-authenticate', 'proxy-authenticate', 'Basic'],
  ['hop-by-hop trailer', 'trailer', 'x-after'],
  ['hop-by-hop upgrade', 'upgrade', 'websocket'],
  ['strict-transport-security', 'strict-transport-security', 'max-age=63072000; includeSubDomains'],
  ['access-control-allow-origin', 'access-control-allow-origin', '*'],
  ['access-control-allow-credentials', 'access-control-allow-credentials', 'true'],
  ['access-control-allow-headers', 'access-control-allow-headers', 'x-csrf'],
  ['access-control-allow-methods', 'access-control-allow-methods', 'GET, POST'],
  ['access-control-expose-headers', 'access-control-expose-headers', 'x-request-id'],
  ['access-control-max-age', 'access-control-max-age', '86400'],
];

/** [rule, upstream header, value]: status, body and content headers come back unchanged. */
const returned: [string, string, string][] = [
  ['content-type', 'content-type', 'application/json; charset=utf-8'],
  ['content-length', 'content-length', '5000'],
  ['content-encoding', 'content-encoding', 'gzip'],
  ['content-disposition', 'content-disposition', 'attachment; filename="invoice.pdf"'],
  ['etag', 'etag', '"v1"'],
  ['cache-control', 'cache-control', 'private, max-age=60'],
  ['an application header', 'x-upstream', 'echo'],
  ['location', 'location', '/api/things/42'],
];

describe('response headers to return', () => {
  it.each(notReturned)('%s is not returned', (_rule, name, value) => {
    expect(responseHeadersToReturn({ [name]: value })).not.toHaveProperty(name);
  });

  it.each(returned)('%s is returned unchanged', (_rule, name, value) => {
    expect(responseHeadersToReturn({ [name]: value })[name]).toBe(value);
  });

  it('drops every header upstream Connection names', () => {
    const out = responseHeadersToReturn({ connection: 'X-Hop', 'x-hop': '1', 'x-kept': '2' });
    expect(out).not.toHaveProperty('x-hop');
    expect(out['x-kept']).toBe('2');
  });

  it('adds nosniff when upstream sent none, and keeps upstream value otherwise', () => {
    expect(responseHeadersToReturn({})['x-content-type-options']).toBe('nosniff');
    expect(responseHeadersToReturn({ 'x-content-type-options': 'nosniff' })['x-content-type-options']).toBe('nosniff');
  });
});
