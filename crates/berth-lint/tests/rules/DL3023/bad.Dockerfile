# lines: 3
FROM debian:12 AS build
COPY --from=build /a /b
