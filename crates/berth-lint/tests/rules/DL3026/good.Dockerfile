FROM debian:12 AS a
FROM public.ecr.aws/docker/library/busybox:1.36
FROM a
FROM scratch
