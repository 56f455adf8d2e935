FROM busybox
RUN echo shell form && echo "with quotes"
RUN ["sh", "-c", "echo exec form"]
RUN [ "echo", "caf\u00e9", "\u2603", "tab\there", "quote\"d", "back\\slash", "\/slash", "nl\n" ]
run ["echo","lower-case keyword"]
RUN [	"echo",	"tabs"	]	
