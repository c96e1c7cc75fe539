# The demo FastAPI app with the mystocks-otel distribution, for docker-compose.yml.
# Pinned to a patch release on Debian 12, the distribution the tests run on.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# .dockerignore admits only what the build needs (never .venv, .git or secrets/).
COPY pyproject.toml README.md ./
COPY mystocks_otel ./mystocks_otel
COPY mixin ./mixin
COPY devtools ./devtools
# The library, the mixin (the demo's stack needs it) and the dev tools that hold the demo.
# The image's pip is too old to backtrack through the OpenTelemetry beta pins.
RUN pip install "pip>=24" && pip install . ./mixin ./devtools

# Not root: the app needs no privileges, and its SQLite default lives in /tmp.
RUN useradd --system --uid 10001 --no-create-home mystocks
USER mystocks

EXPOSE 8000
# slim has neither curl nor wget: probe the exporter's health endpoint with Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/metrics/health', timeout=4)"]
CMD ["mystocks-otel", "demo", "--host", "0.0.0.0", "--port", "8000"]
