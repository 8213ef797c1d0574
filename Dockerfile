# syntax=docker/dockerfile:1
#
# Image of the identity provider. The build stage compiles the TypeScript
# (src/ and the generated Prisma client) to dist/; the runtime stage runs
# `node dist/main.js` with production dependencies only: no tsx loader, no
# esbuild, no sources.
#
#   docker build -t idp .
#   export MASTER_KEY="$(openssl rand -base64 32)"   # once; keep it, it decrypts the vault
#   docker run -p 3000:3000 -e MASTER_KEY -v idp-data:/app/data idp
#
# Without DATABASE_URL the container runs on embedded PGlite in /app/data
# (single node; mount a volume there). For PostgreSQL, Redis and several
# replicas behind a TLS proxy, see docker-compose.yml.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: full install, generate the Prisma client, compile to dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Install scripts are skipped: @prisma/engines' postinstall would download a
# native engine we do not use (the client runs on driver adapters and
# migrations use the WebAssembly schema engine); argon2 and esbuild ship
# their binaries inside their packages.
ENV CHECKPOINT_DISABLE=1 \
    PRISMA_HIDE_UPDATE_MESSAGE=1 \
    PRISMA_SCHEMA_ENGINE_BINARY=/app/package.json
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY prisma.config.ts tsconfig.json tsconfig.build.json ./
COPY prisma ./prisma
COPY scripts ./scripts
COPY src ./src
# Generates the Prisma client, then compiles src/ to dist/ (scripts/build.mjs).
RUN npm run build

# ---- runtime: production dependencies and the compiled server -------------
FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
# MALLOC_MMAP_THRESHOLD_: every Argon2id verification allocates 19 MiB on a
# libuv thread; with glibc's adaptive threshold those blocks stay in each
# thread's arena after use (~80 MB of idle RSS after a few sign-ins). A fixed
# 1 MiB threshold hands them back to the kernel when freed (measured by
# `npm run bench`, which runs the server with the same setting).
# V8's young generation keeps its default size: capping it at 4 MiB per
# semi-space (--max-semi-space-size=4) saved ~20 MB of idle RSS but cost ~30%
# of introspection throughput in `npm run bench`. bench/lib/server.ts mirrors
# these settings.
ENV NODE_ENV=production \
    PORT=3000 \
    DATA_DIR=/app/data \
    CHECKPOINT_DISABLE=1 \
    MALLOC_MMAP_THRESHOLD_=1048576
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
# What the server reads at run time besides dist/: package.json ("type":
# "module"), prisma/ (schema and migrations), views/, bin/ (the idp command,
# which runs dist/cli/main.js here since there is no src/).
COPY bin ./bin
COPY prisma ./prisma
COPY views ./views
COPY --from=build /app/dist ./dist
RUN mkdir -p /app/data /app/keys && chown node:node /app/data /app/keys

USER node
EXPOSE 3000

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"

# node directly (not npm) so SIGTERM reaches the server and it can drain.
CMD ["node", "dist/main.js"]
