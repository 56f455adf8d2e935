FROM node:20-alpine AS Base
WORKDIR /app
FROM base AS deps
RUN npm ci
FROM deps AS test
RUN npm test
FROM base
COPY --from=deps /app/node_modules ./node_modules
