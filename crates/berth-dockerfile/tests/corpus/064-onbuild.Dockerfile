FROM node:20
ONBUILD COPY package*.json ./
ONBUILD RUN npm ci
ONBUILD COPY --chown=node:node . /app
ONBUILD ADD --link vendor.tar.gz /vendor/
ONBUILD ENV NODE_ENV=production
onbuild run echo lower-case
ONBUILD RUN ["echo", "exec"]
ONBUILD HEALTHCHECK CMD true
