FROM alpine
COPY --from=build --from=test /out /out
