#  SYNTAX = docker/dockerfile:1
#Escape=`
# CHECK = skip=all
FROM busybox
RUN echo one `
    two
