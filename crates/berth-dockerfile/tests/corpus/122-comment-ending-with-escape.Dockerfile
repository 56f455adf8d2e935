# a comment ending with the escape character \
FROM alpine
# RUN commands \
# linebreak in comment \
RUN echo "1234" \
    && echo 5678
#EXPOSE\
EXPOSE 3000
