# lines: 3
FROM debian:12
LABEL version=1.2.3 url=https://example.com created=2024-01-31T12:00:00Z license=MIT/Apache revision=0123456789abcdef0123456789abcdef01234567 maintainer=team@example.com description=app
