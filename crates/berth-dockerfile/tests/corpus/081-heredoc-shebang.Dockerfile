FROM python:3.12-slim
RUN <<EOF
#!/usr/bin/env python3
import sys
print("hello from", sys.version)
EOF
RUN <<EOT bash
  set -eux
  echo "heredoc fed to bash"
EOT
