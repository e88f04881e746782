/** Field names that carry credentials in upstream answers (e.g. `AccessToken` in /api/auth/me). */
const TOKEN_FIELD = /^(?:access_?token|refresh_?token|id_?token)$/i;
const TOKEN_FIELD_IN_TEXT = /"(?:access_?token|refresh_?token|id_?token)"\s*:/i;

function strip(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strip);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (!TOKEN_FIELD.test(k)) out[k] = strip(v);
    return out;
  }
  return value;
}

/**
 * Returns the same buffer when no token field is present (the common, cheap case: one
 * regex scan), else the JSON without those fields. Unparseable JSON that names a token
 * field has the values blanked textually rather than passed through.
 */
export function stripTokenFields(body: Buffer, secrets: readonly string[] = []): Buffer {
  // An upstream that echoes its request (debug endpoints, error pages) would hand back the bearer.
  const echoed = secrets.some((s) => s.length > 0 && body.includes(s));
  // Every field name we remove ends in `oken"` (AccessToken", access_token", id_token"...):
  // one byte search, no string copy, for the common answer that has none.
  if (!echoed && !body.includes('oken"') && !body.includes('OKEN"')) return body;
  const text = body.toString('utf8');
  if (!echoed && !TOKEN_FIELD_IN_TEXT.test(text)) return body;
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('[redacted]');
  if (!TOKEN_FIELD_IN_TEXT.test(out)) return Buffer.from(out, 'utf8');
  try {
    return Buffer.from(JSON.stringify(strip(JSON.parse(out))), 'utf8');
  } catch {
    return Buffer.from(out.replace(/("(?:access_?token|refresh_?token|id_?token)"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]]*)/gi, '$1null'), 'utf8');
  }
}
