FROM alpine
RUN echo "<<EOF" > /literal
RUN echo '<<EOF' >> /literal
RUN cat<<EOF-is-not-a-word-start
RUN echo << EOF spaced is not a heredoc either
CMD ["sh", "-c", "cat <<EOF"]
