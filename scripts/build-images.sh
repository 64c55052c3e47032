#!/usr/bin/env bash
# Builds the image the tests, examples and demo use, distributeai/toolbox:local, from what this
# machine has: no container registry is contacted. It is a FROM-scratch image holding the
# static busybox of Debian's busybox-static package (sh, sha256sum, ls, cat, dd, sleep, head,
# awk, ...), which the script installs when missing. Safe to run again.
set -euo pipefail

IMAGE=${DISTRIBUTEAI_TOOLBOX_IMAGE:-distributeai/toolbox:local}
BUSYBOX=/bin/busybox

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "build-images: need Debian's busybox-static; run as root or: sudo apt-get install busybox-static" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "build-images: cannot reach the Docker engine (is it running, and may this user use it?)" >&2
  exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$BUSYBOX" "$context/busybox"
cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "sh", "-c", "mkdir -p /usr/bin /tmp /out && ln -s /bin/env /usr/bin/env && chmod 1777 /tmp"]
ENV PATH=/bin
LABEL org.opencontainers.image.title="distributeai toolbox" \
      org.opencontainers.image.description="static busybox for DistributeAI tests and examples"
CMD ["sh"]
DOCKERFILE

if ! docker build --quiet --tag "$IMAGE" "$context" >"$context/build.log" 2>&1; then
  cat "$context/build.log" >&2
  exit 1
fi
echo "built $IMAGE ($(docker image inspect --format '{{.Id}}' "$IMAGE"))"
