FROM ubuntu:24.04
RUN <<EOF
FROM scratch
USER root
COPY --from=nowhere / /
ENV NOT_AN=instruction
# not a Dockerfile comment either
EOF
USER nobody
