#!/usr/bin/env bash
# Build the gateway image (deploy/Dockerfile) with podman, needing no registry.
#
#   scripts/build-image.sh [TAG]        # default localhost/turnout:dev
#
# The Dockerfile's BASE is a Debian image with python3; where no registry is
# reachable, this builds one from Debian's own packages: a minimal bookworm
# (debootstrap --variant=minbase, with python3, python3-venv, ca-certificates;
# needs root and the debootstrap package), imported as $TURNOUT_BASE_IMAGE
# (default localhost/turnout-base:bookworm-slim). An existing image of that
# name is used as it is: set TURNOUT_BASE_IMAGE=python:3.11-slim where Docker
# Hub is reachable.
#
# pip in the build stage checks TLS against the host's CA bundle (bind-mounted
# over the build's during RUN only), so a TLS-intercepting proxy the host
# trusts works; PIP_INDEX_URL, if set, is passed on as a build argument.
#
# Container engines in sandboxes: crun refuses cgroup v1/v2 hybrid hosts
# ("cgroups in hybrid mode not supported"), so runc is used where crun cannot
# start a container; podman's default rlimits (nofile 1048576) can exceed the
# host's hard limits, so explicit ones at most the host's are given.
# tests/deploy/test_container.py builds with this script and runs the image.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-localhost/turnout:dev}"
base="${TURNOUT_BASE_IMAGE:-localhost/turnout-base:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

command -v podman >/dev/null || { echo "podman is not installed" >&2; exit 2; }

if ! podman image exists "$base"; then
    if [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null; then
        echo "no image $base, and building it needs root and debootstrap" >&2
        exit 2
    fi
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    echo "building $base from $mirror (a few minutes, once)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror" >/dev/null
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    tar --numeric-owner -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
fi

nofile="$(ulimit -Hn)"
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; then nofile=65536; fi
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)

runtime=()
if [ -n "${PODMAN_RUNTIME:-}" ]; then
    runtime=(--runtime "$PODMAN_RUNTIME")
elif ! podman run --rm "${limits[@]}" "$base" true >/dev/null 2>&1 && command -v runc >/dev/null; then
    runtime=(--runtime runc)
fi

build=(--format docker --ignorefile deploy/Dockerfile.dockerignore --build-arg "BASE=$base")
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    build+=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
if [ -n "${PIP_INDEX_URL:-}" ]; then
    build+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
fi

podman "${runtime[@]}" build "${build[@]}" "${limits[@]}" -f deploy/Dockerfile -t "$tag" .
