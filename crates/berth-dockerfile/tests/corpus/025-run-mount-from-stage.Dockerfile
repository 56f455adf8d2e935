FROM alpine AS assets
RUN mkdir -p /out && echo css > /out/site.css
FROM nginx:alpine
RUN --mount=from=assets,source=/out,target=/mnt/assets \
    cp -r /mnt/assets /usr/share/nginx/html/
RUN --mount=type=bind,from=golang:1.22,src=/usr/local/go,dst=/go go version || true
