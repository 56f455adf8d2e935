FROM python:3.12
RUN pip install --no-cache-dir requests==2.32.3 && pip install --no-cache-dir -r requirements.txt
