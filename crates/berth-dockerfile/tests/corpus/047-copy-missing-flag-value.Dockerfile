FROM alpine
COPY --from /out /out
