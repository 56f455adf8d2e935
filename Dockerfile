# berth's own image, built by berth (dogfooding), for linux/amd64 and linux/arm64:
#
#   scripts/image.sh                                   # binaries, context, build, check
#   berth build --platform linux/amd64,linux/arm64 -t REGISTRY/berth:TAG --push target/image-context
#
# The context comes from scripts/image-context.sh: per architecture, the berth binary and the C
# runtime it links, nothing else (no shell, no package manager). Run it with
#
#   podman run -p 5000:5000 -v berth-data:/data IMAGE serve
#
# and read the first-start steps with `podman logs`; the administrator's credentials are in the
# volume (`podman run --rm -v berth-data:/data --entrypoint … ` or `podman volume inspect`).
# The metrics listener (5001: /metrics, /healthz, /readyz) asks for no credentials: publish it
# only on an internal network.
FROM scratch
ARG TARGETARCH
COPY rootfs-${TARGETARCH}/ /
COPY --chown=65532:65532 data/ /data/
ENV BERTH_DATA=/data \
    BERTH_LISTEN=0.0.0.0:5000 \
    BERTH_METRICS_LISTEN=0.0.0.0:5001 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /data
VOLUME /data
EXPOSE 5000 5001
ENTRYPOINT ["/usr/bin/berth"]
CMD ["serve"]
