FROM alpine
COPY package.json package-lock.json /app/
ADD a b c /dst/
COPY "quoted name" /app/
COPY $SRC ${DEST:-/opt}
