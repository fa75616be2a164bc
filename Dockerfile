# syntax=docker/dockerfile:1
#
# The baseguard controller image: `baseguard run` (operator + webhook) by default,
# any other sub-command (`serve`, `check`, ...) on request.
#
#   docker build -t baseguard .
#
# Two stages on the same base. The first builds the wheels and installs them into a
# virtual environment; the second copies only that environment onto a clean base: no
# compiler, no wheel cache, no source tree, no build tooling of ours.
#
# The base is pinned by digest: python:3.12.13-slim (Debian 13 trixie), the
# multi-platform index as published by Docker Official Images and recorded in
# docker-library/repo-info (repos/python/remote/3.12.13-slim.md, commit 2986dca).
# A tag can be moved; a digest cannot. Renovate/Dependabot can bump both together.
# The image passes baseguard's own library policies (tests/test_dockerfile_image.py):
#   baseguard check Dockerfile -p policies/ --offline
ARG PYTHON_BASE=docker.io/library/python:3.12.13-slim
ARG PYTHON_DIGEST=sha256:229a2c5bfa27522db7815ea81f9bed70af17ccb9de9fc7ad142b1877b5830d36

FROM ${PYTHON_BASE}@${PYTHON_DIGEST} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Metadata first, then the package: a source change does not rebuild the layers above.
COPY pyproject.toml README.md ./
COPY controller ./controller
# The commit `baseguard --version` prints (the build context holds no .git):
#   docker build --build-arg BASEGUARD_COMMIT="$(git rev-parse HEAD)" -t baseguard .
ARG BASEGUARD_COMMIT=""
RUN if [ -n "${BASEGUARD_COMMIT}" ]; then printf '%s\n' "${BASEGUARD_COMMIT}" > controller/commit.txt; fi
# Wheels for baseguard and every dependency (the operator extra: kopf, kubernetes),
# then a virtual environment without pip, filled from those wheels only.
# DL3013 (pin versions in pip install) does not fit the install step: it installs the
# wheel built on the line before, offline (--no-index), from /wheels alone. Dependency
# versions are resolved by `pip wheel` within pyproject.toml's ranges.
# hadolint ignore=DL3013
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]" \
 && python -m venv --without-pip /opt/baseguard \
 && wheel="$(echo /wheels/baseguard-*.whl)" \
 && pip --python /opt/baseguard/bin/python install --no-cache-dir --no-index \
        --find-links /wheels "${wheel}[operator]"

FROM ${PYTHON_BASE}@${PYTHON_DIGEST} AS runtime
ARG PYTHON_BASE
ARG PYTHON_DIGEST
# baseguard reads these on every image it checks; its own image says what it is built on.
LABEL org.opencontainers.image.title="baseguard" \
      org.opencontainers.image.description="Kubernetes admission control for base image policy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_BASE}" \
      org.opencontainers.image.base.digest="${PYTHON_DIGEST}"
ENV PATH=/opt/baseguard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/baseguard /opt/baseguard
# A numeric non-root user (the chart's runAsUser): no /etc/passwd entry needed, and
# Kubernetes can verify runAsNonRoot without resolving a name.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["baseguard"]
CMD ["run"]
