# kaquan: one image for every role (api, worker, scheduler, migrate); the command picks the role.
#   docker build -t kaquan:local .
#   docker run --rm kaquan:local --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KAQUAN_DATA_DIR=/var/lib/kaquan \
    KAQUAN_HOST=0.0.0.0 \
    KAQUAN_PORT=8000

# A fixed, unprivileged user; the data folder is the only place it can write.
RUN groupadd --system --gid 10001 kaquan \
    && useradd --system --uid 10001 --gid kaquan --home-dir /var/lib/kaquan --no-create-home \
       --shell /usr/sbin/nologin kaquan \
    && mkdir -p /var/lib/kaquan \
    && chown kaquan:kaquan /var/lib/kaquan

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY core ./core
COPY tenants ./tenants
COPY plugins ./plugins
COPY admin_ui ./admin_ui
RUN pip install . && kaquan --help >/dev/null

# `kaquan migrate` reads alembic.ini and alembic/ next to the code (they are not package data), so the
# code runs from /app; the installed distribution provides the dependencies, the plugin entry points
# and the `kaquan` script.
ENV PYTHONPATH=/app

USER kaquan:kaquan
EXPOSE 8000
ENTRYPOINT ["kaquan"]
CMD ["serve"]
