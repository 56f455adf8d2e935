FROM scratch
FROM busybox:1.36
FROM docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
FROM --platform=linux/arm64 alpine:3.20 AS Builder
from alpine as lower.case_name-2
FROM localhost:5000/team/app:v1.2.3 AS Final
