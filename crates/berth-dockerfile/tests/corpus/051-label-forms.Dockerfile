FROM busybox
LABEL org.opencontainers.image.title="berth" \
      org.opencontainers.image.description="A registry \
that fits" \
      "com.example.quoted-key"="yes" \
      empty=""
LABEL maintainer James Turnbull "james@example.com"
LABEL version=1.0 release='2024 Q1' escaped=with\ space
