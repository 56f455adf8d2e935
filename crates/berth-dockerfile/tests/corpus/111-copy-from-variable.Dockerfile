FROM alpine
ARG STAGE=build
COPY --from=${STAGE} /out /out
