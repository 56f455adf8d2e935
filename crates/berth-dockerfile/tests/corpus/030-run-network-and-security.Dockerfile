FROM alpine
RUN --network=none make offline-test
RUN --network=host curl -fsS http://localhost:8080/health
RUN --network=default apk add --no-cache curl
RUN --security=insecure mount -t tmpfs none /mnt
RUN --security=sandbox --network=none echo sandboxed
