# lines: 2
FROM debian
