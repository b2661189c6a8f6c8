# syntax=docker/dockerfile:1.7
# The evomerge worker: the controller, merge, evaluation and export Jobs (torch, transformers, lm-eval,
# mergekit's formulas and mergekit-yaml itself for storage.output.exporter: mergekit; the Kubernetes client
# for the controller). PyPI's Linux torch wheels bring CUDA.
#   docker build -f images/worker.Dockerfile -t ghcr.io/evomerge/evomerge-worker:0.1.0 .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt ".[worker,operator,mergekit]"

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1
COPY --from=build /install /usr/local
USER 65532:65532
WORKDIR /tmp
# Jobs set their own command (evomerge controller | evaluate-batch | merge | export-model).
ENTRYPOINT ["evomerge"]
CMD ["--help"]
