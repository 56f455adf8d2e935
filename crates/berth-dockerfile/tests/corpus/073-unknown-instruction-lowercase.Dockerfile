from alpine
cpoy . /app
