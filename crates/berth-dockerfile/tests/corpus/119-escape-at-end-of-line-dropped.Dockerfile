FROM alpine
ARG A=one\\\
ENV B=two\\\ C=three\\\
LABEL d=four\\
RUN echo done
