FROM busybox
ONBUILD ONBUILD RUN echo nested
