import express, { type Request, type Response, type Router } from 'express';
import type { Registry } from 'prom-client';
import type { TokenStore } from '../store/token-store.js';

export function createOpsRoutes(deps: { store: TokenStore; registry: Registry; isShuttingDown: () => boolean }): Router {
  const router = express.Router();
  router.get('/healthz', (_req: Request, res: Response) => {
    res.status(200).json({ status: 'ok' });
  });
  router.get('/readyz', async (_req: Request, res: Response) => {
    if (deps.isShuttingDown()) {
      res.status(503).json({ error: 'shutting_down', message: 'This instance is shutting down.' });
      return;
    }
    try {
      await deps.store.ping();
      res.status(200).json({ status: 'ready' });
    } catch {
      res.status(503).json({ error: 'session_store_unavailable', message: 'The session store does not answer.' });
    }
  });
  router.get('/metrics', async (_req: Request, res: Response) => {
    res.set('Content-Type', deps.registry.contentType).send(await deps.registry.metrics());
  });
  return router;
}
