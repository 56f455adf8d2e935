FROM alpine
COPY ["file with spaces.txt", "/dest/"]
COPY ["a", "b", "/multi/"]
ADD ["https://example.com/archive.tar.gz", "/tmp/"]
COPY [ "--not-a-flag", "/x" ]
COPY ["<<EOF", "/y"]
