FROM busybox
LABEL a=b c="d" e
