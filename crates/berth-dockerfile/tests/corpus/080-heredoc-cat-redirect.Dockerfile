FROM nginx:alpine
RUN cat <<EOF > /etc/nginx/conf.d/default.conf
server {
    listen 80;
    location / { root /usr/share/nginx/html; }
}
EOF
RUN nginx -t
