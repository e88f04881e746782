// The proxy lives in src/proxy/; this path stays for app.ts and other importers.
export { createApiProxy, REPLAY_LIMIT, type ApiProxyDeps } from '../proxy/api-proxy.js';
