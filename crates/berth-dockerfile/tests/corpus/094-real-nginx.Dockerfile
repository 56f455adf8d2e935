FROM nginx:1.27-alpine
LABEL org.opencontainers.image.source="https://github.com/example/site" \
      org.opencontainers.image.licenses="MIT"
RUN rm /etc/nginx/conf.d/default.conf
COPY <<'EOF' /etc/nginx/conf.d/site.conf
server {
    listen 8080;
    root /usr/share/nginx/html;
    location / { try_files $uri $uri/ /index.html; }
}
EOF
COPY --chown=nginx:nginx public/ /usr/share/nginx/html/
EXPOSE 8080
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD wget -qO- http://127.0.0.1:8080/ >/dev/null || exit 1
CMD ["nginx", "-g", "daemon off;"]
