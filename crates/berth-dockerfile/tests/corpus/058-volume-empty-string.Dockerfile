FROM busybox
VOLUME ["/ok", " "]
