import type { IncomingMessage } from 'node:http';
import type { ForwardedFor } from './header-rules.js';

/** Express's compiled TRUST_PROXY (`app.get('trust proxy fn')`): is the hop at `addr`, `i` hops in, trusted? */
export type TrustFn = (addr: string, i: number) => boolean;

/**
 * The client address as Express's `req.ip` decides it (proxy-addr): from the socket back
 * through `X-Forwarded-For` while each hop is trusted; the first untrusted one is the client.
 */
export function clientAddress(req: IncomingMessage, trust: TrustFn): string {
  const socketAddress = req.socket.remoteAddress ?? '';
  const header = req.headers['x-forwarded-for'];
  if (!header) return socketAddress;
  const hops = [socketAddress, ...(Array.isArray(header) ? header.join(',') : header).split(',').map((s) => s.trim()).filter(Boolean).reverse()];
  for (let i = 0; i < hops.length - 1; i += 1) if (!trust(hops[i] ?? '', i)) return hops[i] ?? '';
  return hops[hops.length - 1] ?? '';
}

/** What the proxy sends as `X-Forwarded-*`, from TRUST_PROXY and the origin the browser sees. */
export function createForwarding(trust: TrustFn, ownOrigin: (req: IncomingMessage) => string): (req: IncomingMessage) => ForwardedFor {
  return (req) => {
    const origin = ownOrigin(req);
    const sep = origin.indexOf('://');
    return { for: clientAddress(req, trust), proto: origin.slice(0, sep), host: origin.slice(sep + 3) };
  };
}

/** Without TRUST_PROXY wiring: the socket's own address, TLS and Host. */
export function directForwarding(req: IncomingMessage): ForwardedFor {
  const encrypted = (req.socket as { encrypted?: boolean }).encrypted === true;
  return { for: req.socket.remoteAddress ?? '', proto: encrypted ? 'https' : 'http', host: req.headers.host ?? '' };
}
