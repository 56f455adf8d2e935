# lines: 3
FROM debian:12
LABEL version=1.2.3 url=https://example.com created=yesterday license=Apache-2.0 revision=0123456789abcdef0123456789abcdef01234567 maintainer=team@example.com description=app
