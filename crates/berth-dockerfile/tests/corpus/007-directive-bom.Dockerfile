# escape=`
FROM busybox
RUN echo a byte-order mark before the directive `
    does not hide it
