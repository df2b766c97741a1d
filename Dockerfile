# One image for web, workers and beat, in two variants that differ only in their torch build:
#   docker build --build-arg VARIANT=cpu  --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> .
#   docker build --build-arg VARIANT=cuda .
# TORCH_INDEX_URL empty: pip's default index, whose torch==2.13.0 on Linux is the CUDA build (a
# few GB; it also runs on CPU). The CPU-only build comes from PyTorch's own CPU wheel index,
# whose URL you pass as TORCH_INDEX_URL (README: "Installing torch"). docker compose passes
# TORCH_CPU_INDEX_URL from .env for the CPU image.
ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM base AS torch-cpu
ARG TORCH_VERSION
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"; \
    else echo "TORCH_INDEX_URL is empty: installing the default index's torch (the CUDA build on Linux)"; \
    pip install "torch==$TORCH_VERSION"; fi
ENV SAMPLER_DEVICE=cpu

FROM base AS torch-cuda
ARG TORCH_VERSION
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"; \
    else pip install "torch==$TORCH_VERSION"; fi
# The NVIDIA container runtime exposes the GPUs reserved for the container.
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility SAMPLER_DEVICE=auto

FROM torch-${VARIANT} AS app
COPY pyproject.toml README.md ./
COPY config ./config
COPY accounts ./accounts
COPY labeling ./labeling
COPY ranking ./ranking
COPY sampler ./sampler
RUN pip install ".[sentry]"
COPY . .
RUN TANDEM_MODE=production SECRET_KEY=build-only-not-a-secret-build-only-not-a-secret \
    DATABASE_URL=postgres://build@localhost/build CELERY_BROKER_URL=redis://localhost:6379/0 \
    ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput
# The non-root user owns everything the app writes. Docker fills an empty named volume from the
# image's directory at its mount point, owner included, so volumes mounted on these paths
# (docker-compose.yml) are writable by this user.
RUN useradd --create-home --uid 1000 tandem \
    && mkdir -p /app/var/models /app/var/exports /app/var/hf-cache /app/var/media /app/var/run \
    && chown -R tandem:tandem /app/var
USER tandem
ENV VAR_DIR=/app/var MODEL_ROOT=/app/var/models EXPORT_ROOT=/app/var/exports
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
