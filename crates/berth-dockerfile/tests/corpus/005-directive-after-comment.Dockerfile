# A leading comment closes the directive block.
# syntax=example.com/frontend:latest
# escape=`
FROM busybox
RUN echo still backslash \
    continued
