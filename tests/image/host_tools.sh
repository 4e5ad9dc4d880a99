#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host for `make test-image`: installs debootstrap, buildah, podman and runc
# when missing (apt-get, as root or through sudo), then makes the Debian bookworm base image from
# debootstrap, cached as a tarball under ~/.cache/kit/image/ and imported into podman's store once.
# No Docker engine or registry pull is needed. Prints the base image's name on the last line.
set -euo pipefail

BASE_TAG="${KIT_IMAGE_BASE:-localhost/kit-bookworm-base:1}"
CACHE="${KIT_IMAGE_CACHE:-$HOME/.cache/kit/image}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TARBALL="$CACHE/bookworm-minbase.tar"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# containernetworking-plugins: podman's bridge and port mapping; without it `-p` cannot publish a port.
# catatonit: podman's init, for compose.yaml's `init: true`.
packages=(debootstrap buildah podman runc containernetworking-plugins uidmap ca-certificates catatonit)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    echo "installing ${packages[*]} (apt-get)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if [ ! -s "$TARBALL" ]; then
    echo "making the bookworm base with debootstrap into $TARBALL (about a minute, once)" >&2
    mkdir -p "$CACHE"
    rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'as_root rm -rf "$rootfs"' EXIT
    as_root debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
    # apt's lists and caches are rebuilt by the Dockerfile's own apt-get update.
    as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    as_root tar -C "$rootfs" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
fi

if ! as_root podman image exists "$BASE_TAG"; then
    as_root podman import --quiet "$TARBALL" "$BASE_TAG" >/dev/null
fi
echo "$BASE_TAG"
