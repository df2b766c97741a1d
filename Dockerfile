# One image for web, workers and beat. Build: docker compose build
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# torch is pinned by TORCH_SPEC: the CPU build by default, e.g. "torch==2.13.0" with
# --index-url of a CUDA build for GPU workers (build arg TORCH_INDEX_URL).
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"; \
    else pip install "$TORCH_SPEC"; fi
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY pyproject.toml README.md ./
COPY config ./config
COPY accounts ./accounts
COPY labeling ./labeling
COPY ranking ./ranking
COPY sampler ./sampler
RUN pip install .
COPY . .
RUN TANDEM_MODE=production SECRET_KEY=build-only-not-a-secret-build-only-not-a-secret \
    DATABASE_URL=postgres://build@localhost/build CELERY_BROKER_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput
RUN useradd --create-home tandem && mkdir -p /app/var && chown -R tandem /app/var
USER tandem
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
