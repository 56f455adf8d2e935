FROM nginx
HEALTHCHECK NONE
HEALTHCHECK CMD curl -fsS http://localhost/ || exit 1
HEALTHCHECK CMD ["curl", "-fsS", "http://localhost/"]
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1h --start-interval=500ms --retries=5 \
  CMD wget -qO- http://localhost/health
HEALTHCHECK --interval=1.5s --timeout=100ms --retries=0 CMD true
HEALTHCHECK --start-period=0s --start-interval=0 --interval=5m --timeout=2h45m CMD ["true"]
healthcheck --interval=10s cmd echo lower-case type
HEALTHCHECK --interval=5s NONE
