FROM alpine
RUN --device=vendor1.com/device=foo,required nvidia-smi
