# The tesson image: the tesson CLI in a venv, plus nginx with its stream module, so one image is
# the tool (`docker run ... tesson ps`, the `docker tesson` plugin), every group's embedded
# balancer, and a demo shard (`tesson demo-server`).
#
#   docker build -t tesson .                      # with network: an official slim Python base
#   make image                                    # offline, as CI does: local Debian base + host wheels
#
# BASE_IMAGE must be Debian-like with python3 (3.9+) and the venv module. nginx,
# libnginx-mod-stream and nftables (nft, for the kernel front door's agent) are installed with apt
# only when the base lacks them (tesson-base:bookworm, made by scripts/base-image, already has
# them, so the offline build downloads nothing).
# When build/wheels holds wheels (scripts/build-image puts tesson's dependencies and setuptools
# there), pip installs from them with --no-index; otherwise it fetches from PyPI. Everything is
# byte-compiled at build time: a CLI container starts fresh every time, and must not compile.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Marks this stage's leftover image, which scripts/build-image prunes once it is dangling.
LABEL io.tesson.stage=build
COPY . /src
RUN set -eu; \
    python3 -m venv --without-pip /opt/tesson; \
    python3 -m venv /tmp/pip; \
    if ls /src/build/wheels/*.whl >/dev/null 2>&1; then \
        set -- --no-index --find-links /src/build/wheels; \
    else \
        set --; \
    fi; \
    /tmp/pip/bin/pip --disable-pip-version-check --no-cache-dir --python /opt/tesson/bin/python \
        install --no-compile "$@" /src; \
    /opt/tesson/bin/python -m compileall -q -j 0 /opt/tesson/lib; \
    /opt/tesson/bin/tesson --version

FROM ${BASE_IMAGE}
# The version is tesson/__init__.py's: scripts/build-image passes it (a plain build says "dev").
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE_URL=https://github.com/kobolog/tesson
RUN set -eu; \
    if ! command -v nginx >/dev/null 2>&1 || ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1 \
       || ! command -v nft >/dev/null 2>&1; then \
        apt-get update; \
        apt-get install -y --no-install-recommends nginx libnginx-mod-stream nftables; \
        apt-get clean; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*; \
    fi; \
    rm -f /etc/nginx/sites-enabled/default; \
    nginx -V 2>&1 | head -n 1; \
    nft --version; \
    python3 -m compileall -q -j 0 "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" >/dev/null || true
COPY --from=build /opt/tesson /opt/tesson
ENV PATH=/opt/tesson/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="tesson" \
      org.opencontainers.image.description="Shard a containerised app across a machine's cores, caches and NUMA nodes, behind one local load balancer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.url="${SOURCE_URL}"
ENTRYPOINT ["tesson"]
CMD ["--help"]
