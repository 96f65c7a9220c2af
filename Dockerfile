# tidescaler: the KEDA external scaler (`tidescaler serve`).
FROM python:3.11-slim

# The root filesystem is read-only in the cluster; caches go to the /tmp volume.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY scaler ./scaler
# The dependency versions the test suite ran with (constraints.txt, `make lock`).
RUN pip install -c constraints.txt . \
    && rm -rf /src \
    && groupadd --gid 10001 tidescaler \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tidescaler

WORKDIR /
# Numeric, so that Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 9090 8080
ENTRYPOINT ["tidescaler", "serve"]
