FROM nginx
HEALTHCHECK --retries=-1 CMD true
