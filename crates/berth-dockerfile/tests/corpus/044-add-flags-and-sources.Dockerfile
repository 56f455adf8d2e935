FROM alpine
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/app.tar.gz /tmp/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.14.0:docs /buildkit-docs
ADD --keep-git-dir git@github.com:example/repo.git /repo
ADD --unpack=false vendor.tar.gz /vendor/
ADD --unpack https://example.com/data.tar.xz /data/
ADD --link --chown=1:1 --chmod=644 --exclude=*.bak conf/ /etc/app/
ADD rootfs.tar.xz /
