FROM busybox
ONBUILD MAINTAINER someone@example.com
