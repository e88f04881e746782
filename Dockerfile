# cloakroom: build with the full toolchain, run on a slim Node 22 LTS image.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts ./scripts
COPY bench ./bench
# The browser client (served at /auth/client.js) and the demo SPA that `npm run build` compiles.
COPY packages ./packages
COPY demo ./demo
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# Owned by root, run as `node`: the process cannot rewrite its own code.
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
# dist/ whole: the server (dist/src/main.js), the operator command line (dist/src/cli.js) and
# the demo's fake upstream (dist/scripts/fake-upstream/index.js, the compose `demo` profile).
COPY --from=build /app/dist ./dist
# `cloakroom <command>` inside the container, e.g. `docker compose exec cloakroom cloakroom reseal`.
RUN printf '#!/bin/sh\nexec node /app/dist/src/cli.js "$@"\n' > /usr/local/bin/cloakroom \
 && chmod 0755 /usr/local/bin/cloakroom
COPY --from=build /app/packages/client ./packages/client
USER node
EXPOSE 3000
# Liveness only: /healthz answers while the process runs. /readyz (Redis answers, not draining)
# is for the load balancer; as a liveness check it would restart every container during a Redis
# outage (docs/operations.md). No curl in this image: Node's own fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz',{signal:AbortSignal.timeout(2500)}).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"]
# node directly, not npm: SIGTERM must reach the server for a graceful drain.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
