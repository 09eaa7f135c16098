# One image of this package for every service of docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY archive archive
COPY calib calib
COPY tasks tasks
COPY simulation simulation
COPY migrations migrations
RUN pip install --no-cache-dir '.[server]'
ENV ARCHIVE_DATA_DIR=/data NUMBA_CACHE_DIR=/data/numba-cache
VOLUME ["/data"]
ENTRYPOINT ["archive"]
CMD ["--help"]
