import express, { type Request, type Response, type Router } from 'express';
import type { Registry } from 'prom-client';
import { errors, type AppError } from '../errors.js';
import type { TokenStore } from '../store/token-store.js';
import type { RouterAntiForgery } from './anti-forgery.js';

/** Readiness answers its 503s itself: a probe polling through an outage is not a failed request to log. */
const unready = (res: Response, e: AppError) => res.status(e.status).json({ error: e.code, message: e.message });

export function createOpsRoutes(deps: { store: TokenStore; registry: Registry; isShuttingDown: () => boolean }): { router: Router; antiForgery: RouterAntiForgery } {
  const router = express.Router();
  router.get('/healthz', (_req: Request, res: Response) => {
    res.status(200).json({ status: 'ok' });
  });
  router.get('/readyz', async (_req: Request, res: Response) => {
    if (deps.isShuttingDown()) {
      unready(res, errors.shuttingDown());
      return;
    }
    try {
      await deps.store.ping();
      res.status(200).json({ status: 'ready' });
    } catch {
      unready(res, errors.storeUnavailable());
    }
  });
  router.get('/metrics', async (_req: Request, res: Response) => {
    res.set('Content-Type', deps.registry.contentType).send(await deps.registry.metrics());
  });
  // Probes and scrapers: GETs that change nothing.
  return { router, antiForgery: { rule: 'navigation' } };
}
