# leading comment
FROM alpine
# describes the ARG
# second line
ARG VERSION=1

# after a blank line still attached
#
# after an empty comment
RUN echo $VERSION
