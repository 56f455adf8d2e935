ARG BASE_IMAGE=python:3.12-slim
ARG TAG=bookworm
FROM ${BASE_IMAGE} AS base
RUN pip --version
FROM $BASE_IMAGE:tag AS tagged
FROM debian:$TAG
ARG BASE_IMAGE
RUN echo built from ${BASE_IMAGE}
