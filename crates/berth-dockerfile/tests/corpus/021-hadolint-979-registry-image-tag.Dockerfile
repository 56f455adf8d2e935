ARG REGISTRY=registry.example.com:5000
ARG IMAGE=team/base
ARG TAG=1.0
FROM ${REGISTRY}/${IMAGE}:${TAG}
ARG REGISTRY
LABEL from="${REGISTRY}/${IMAGE}:${TAG}"
FROM ${REGISTRY:-docker.io}/library/alpine:${TAG:-latest} AS fallback
