FROM nginx
HEALTHCHECK --interval=5s CMD
