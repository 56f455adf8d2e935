# lines: 3
FROM debian:12
LABEL version=1.2.3 url=https://example.com created=2024-01-31T12:00:00Z license=Apache-2.0 revision=main maintainer=team@example.com description=app
