FROM alpine
RUN --mount=type=ssh git clone git@github.com:example/private.git
RUN --mount=type=ssh,id=default,required ssh -T git@github.com || true
RUN --mount=type=ssh,id=deploy,target=/run/ssh.sock,mode=0600,uid=1000,gid=1000 true
