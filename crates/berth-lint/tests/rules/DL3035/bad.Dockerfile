# lines: 3
FROM opensuse/leap:15.6
RUN zypper dist-upgrade -y && zypper clean
