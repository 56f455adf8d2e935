# lines: 3
FROM debian:12
LABEL version=1.2.3 url=https://example.com created=yesterday license=Apache-2.0 revision=1a2b3c4d maintainer=team@example.com description=app
