FROM alpine
RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc
RUN --mount=type=secret,id=aws,target=/root/.aws/credentials aws s3 ls
RUN --mount=type=secret,id=token,env=GITHUB_TOKEN,required gh auth status
RUN --mount=type=secret,id=key,required=true,mode=0400,uid=1000,gid=1000 true
RUN --mount=type=secret,target=/etc/secret,required=false true
RUN --mount=type=secret,source=mysecret,target=/s true
