#!/usr/bin/env bash
# Builds a STAND-IN for the Python base image that images/*.Dockerfile name in FROM (python:3.11.11-slim-bookworm),
# for machines that reach package registries but no container registry (CI): Debian bookworm's minimal root
# filesystem from Debian's own archive (mmdebstrap) with Debian's Python 3.11, imported into podman, then a layer
# making /usr/local a virtual environment with pip 24.0 (standin-base.Containerfile). It is tagged with the FROM
# name so the Dockerfiles build unchanged, and also as localhost/evomerge/standin-python, with labels saying what
# it is. It is not the official image (that one has CPython 3.11.11 built from source); images to push to a real
# registry are built where the official base can be pulled.
#
# Cached like the control plane: ${EVOMERGE_CACHE:-$HOME/.cache/evomerge}/images/standin-python-<key>.tar (an OCI
# archive; <key> hashes this script, podman-env.sh and the Containerfile), loaded into podman when podman's own
# storage lacks it. Progress goes to stderr; the last line on stdout is the FROM name.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/podman-env.sh"

ensure_tools
from=$(dockerfile_base)
key=$(cat "$images_dir/standin-base.sh" "$images_dir/podman-env.sh" "$images_dir/standin-base.Containerfile" \
  <(echo "$from") | sha256sum | cut -c1-16)
standin=localhost/evomerge/standin-python:3.11-bookworm
archive=$cache_root/images/standin-python-$key.tar

key_of() { podman image inspect --format '{{index .Labels "dev.evomerge.standin-key"}}' "$1" 2>/dev/null || true; }

if [[ $(key_of "$from") == "$key" ]]; then
  log "stand-in base for $from: present in podman ($standin)"
  echo "$from"
  exit 0
fi

mkdir -p "$cache_root/images"
exec 9>"$cache_root/images/.standin.lock"
flock 9
if [[ $(key_of "$standin") != "$key" && -f $archive ]]; then
  log "loading the cached stand-in base $archive"
  podman load --quiet --input "$archive" >/dev/null
fi
if [[ $(key_of "$standin") == "$key" ]]; then
  podman tag "$standin" "$from"
  log "stand-in base for $from: $standin"
  echo "$from"
  exit 0
fi

started=$SECONDS
work=$(mktemp -d "$cache_root/images/.standin.XXXXXX")
trap 'rm -rf "$work" ${pip_conf-}' EXIT
rootfs=localhost/evomerge/standin-debian-rootfs:bookworm
log "stand-in base for $from: Debian bookworm minbase with python3 from deb.debian.org (mmdebstrap)"
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$work/rootfs.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" \
  || die "mmdebstrap could not build Debian bookworm's root filesystem"
podman import --quiet --message "Debian bookworm minbase (mmdebstrap): the stand-in base's root filesystem" \
  "$work/rootfs.tar" "$rootfs" >/dev/null
log "root filesystem imported after $((SECONDS - started))s; making /usr/local a venv with pip 24.0"
build_mounts
# Only the CA bundle, over the file Debian's ca-certificates put there: a mount at a path the image lacks would
# leave an empty file behind in the layer (podman 4.3), and this layer is every image's base.
podman build --quiet --pull=never --network=host "${mounts[@]:0:2}" \
  --build-arg "DEBIAN_ROOTFS=$rootfs" \
  --label "dev.evomerge.standin-for=$from" \
  --label "dev.evomerge.standin-key=$key" \
  --label "org.opencontainers.image.description=STAND-IN for $from built by hack/images/standin-base.sh: Debian bookworm with Debian's Python 3.11 in a venv at /usr/local, not the official image" \
  --tag "$standin" --tag "$from" \
  --file "$images_dir/standin-base.Containerfile" "$images_dir" >/dev/null \
  || die "the stand-in base's venv layer did not build"
podman rmi --force "$rootfs" >/dev/null
rm -f "$cache_root"/images/standin-python-*.tar
podman save --quiet --format oci-archive --output "$work/standin.tar" "$standin"
mv "$work/standin.tar" "$archive"
log "stand-in base built in $((SECONDS - started))s ($(podman image inspect --format '{{.Size}}' "$standin") bytes), cached in $archive"
echo "$from"
