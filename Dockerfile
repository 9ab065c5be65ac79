# edge-bridge image: `edge-bridge serve` (migrations run on start) as a non-root user.
#
#   docker build -t edge-bridge .
#   docker run --env-file .env -p 127.0.0.1:8000:8000 edge-bridge
#
# Two stages. The builder installs the dependencies at the versions of
# deploy/requirements.lock (pyproject.toml's dependencies with the `postgres` extra, pinned),
# then the project, into a virtual environment; the final image copies only that
# environment, so neither build leftovers nor pip's cache reach it, and no compiler is ever
# installed (every dependency ships binary wheels). compose.yaml builds and runs this image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY deploy/requirements.lock deploy/requirements.lock
RUN pip install --requirement deploy/requirements.lock
COPY pyproject.toml README.md ./
COPY edge_bridge/ edge_bridge/
COPY edge_ops/ edge_ops/
COPY api/ api/
COPY simulator/ simulator/
COPY mosquitto/acl.template mosquitto/acl.template
RUN pip install --no-deps . \
    && pip check \
    && site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && install -D -m 0644 mosquitto/acl.template "$site/mosquitto/acl.template"
# (credentials.py renders the ACL from <site-packages>/mosquitto/acl.template, the
# repository's layout seen from an installed package.)

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8000

# mosquitto_passwd, for `edge-bridge devices credentials` (the broker runs elsewhere).
# Unpinned on purpose: Debian's security updates replace exact versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin edge \
    && install -d -o edge -g edge -m 0750 /app /app/data

COPY --from=builder /opt/venv /opt/venv
# The demo school, for `edge-bridge import /app/demo/school.json` and compose's simulator.
COPY edge_ops/demo/school.json /app/demo/school.json

WORKDIR /app
USER 10001:10001
EXPOSE 8000
# The SQLite file (when DATABASE_URL is not PostgreSQL) and a generated JWT secret live here.
VOLUME ["/app/data"]
ENTRYPOINT ["edge-bridge"]
CMD ["serve"]
