FROM alpine
RUN --mount=type=secret,id=token,from=builder cat /run/secrets/token
