FROM alpine
RUN <<-EOF
	echo indented with a tab
		echo two tabs
    echo spaces stay
	EOF
RUN <<-'END' cat > /x
	literal $HOME
		END
