# syntax=docker/dockerfile:1.7
# The evomerge operator: kopf, the Kubernetes client and prometheus-client — no torch.
#   docker build -f images/operator.Dockerfile -t ghcr.io/evomerge/evomerge-operator:0.1.0 .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt ".[operator]"

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# A fixed non-root user (the chart's runAsUser) and a read-only root filesystem: kopf writes nothing.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["evomerge"]
CMD ["operator", "--log-format=json"]
