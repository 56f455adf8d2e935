FROM busybox
ENV name value
ENV name=value
ENV name=value name2=value2
ENV name="value value1"
ENV name=value\ value2
ENV name="value'quote space'value2"
ENV name='value"double quote"value2'
ENV name="a\"b"
ENV name='a\'b'
ENV PATH=/opt/bin:$PATH HOME="${HOME:-/root}"
ENV legacy value with   several    spaces
env lower=case
ENV multi=one \
    other="two \
           lines" \
    last=three
