FROM busybox
ENV A path
ENV B another\\path
ENV C trailing\\backslash\\
ENV D This is not appended to C
RUN echo one \\
RUN echo two
