FROM debian
SHELL /bin/bash -c
