FROM alpine
RUN --network=bridge echo nope
