FROM busybox
RUN echo hello\
  world\
  goodnight  \
  moon
RUN echo hi \
 \
 world \
\
 good\
\
night
RUN echo good\
bye
