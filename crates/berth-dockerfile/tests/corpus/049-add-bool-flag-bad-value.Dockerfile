FROM alpine
ADD --keep-git-dir=yes https://github.com/moby/buildkit.git /bk
