# cabtrack: Node 24 runs the TypeScript sources directly (type stripping); no build step.
FROM node:24-slim
ENV NODE_ENV=production \
    CABTRACK_HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only (the `node` package, tsc, tap and biome are dev dependencies).
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY config ./config
COPY proto ./proto
COPY src ./src
USER node
EXPOSE 5005/udp 8080/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.CABTRACK_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "src/main.ts"]
