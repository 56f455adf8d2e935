FROM nginx
HEALTHCHECK --interval=5 CMD true
