FROM debian:12 AS builder
FROM debian:12
COPY --from=builder /out /out
COPY --from=0 /out /out2
COPY --from=busybox:1.36 /bin/busybox /bin/busybox
