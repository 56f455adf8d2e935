# lines: 3
FROM debian:12
MAINTAINER someone@example.com
