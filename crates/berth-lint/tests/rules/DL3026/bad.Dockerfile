# lines: 2
FROM ghcr.io/org/app:1.0
