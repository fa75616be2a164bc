# A Python app: the base comes from build args, with defaults.
ARG PYTHON_VERSION=3.12.3
ARG REGISTRY
FROM ${REGISTRY:-docker.io}/library/python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1
FROM base AS deps
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
from deps
COPY <<EOF /app/main.py
from flask import Flask
app = Flask(__name__)
EOF
CMD ["python", "/app/main.py"]
