# lookalike's HTTP service, installed exactly as the README does (make setup: a venv, torch==2.13.0, the package).
# Build: docker build -t lookalike .   Run: docker run -p 8000:8000 -v "$PWD/photos:/data/photos:ro" \
#   -v lookalike-index:/data/index -e LOOKALIKE_API_TOKEN=change-me lookalike
FROM python:3.11-slim

# make comes from the base image's Debian release; its version follows that release
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 lookalike \
    && mkdir -p /data/index /data/photos /data/cache \
    && chown -R lookalike:lookalike /data
WORKDIR /app
COPY --chown=1000:1000 . /app
USER 1000:1000

RUN make setup \
    && .venv/bin/lookalike --help > /dev/null

ENV LOOKALIKE_CACHE=/data/cache
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD [".venv/bin/python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
CMD [".venv/bin/lookalike", "serve", "--host", "0.0.0.0", "--index", "/data/index", "--allowed-roots", "/data/photos"]
