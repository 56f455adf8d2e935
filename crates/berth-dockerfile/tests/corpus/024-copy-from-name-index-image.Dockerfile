FROM golang:1.22 AS build
RUN go build -o /app .
FROM alpine:3.20
COPY --from=build /app /usr/local/bin/app
COPY --from=0 /go/pkg /tmp/pkg
COPY --from=nginx:1.27-alpine /etc/nginx/nginx.conf /etc/nginx/
