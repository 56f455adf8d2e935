FROM alpine
RUN --mount=type=bnd,target=/src ls /src
