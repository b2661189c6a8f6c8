# Sourced by the scripts beside it: podman (with mmdebstrap and runc) installed from Debian if missing, our
# containers.conf in force, and the machine's CA bundle and pip settings handed to builds as read-only mounts.
# shellcheck shell=bash

images_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$images_dir/../.." && pwd)
cache_root=${EVOMERGE_CACHE:-$HOME/.cache/evomerge}
export CONTAINERS_CONF=$images_dir/containers.conf

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ensure_tools() {  # Debian's podman, mmdebstrap (the stand-in base's root filesystem) and runc (see containers.conf)
  local missing=() tool
  for tool in podman mmdebstrap runc; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and no apt-get: install them (Debian/Ubuntu packages of the same names)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  log "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends podman mmdebstrap runc >/dev/null
}

# pip inside a build trusts what this machine trusts (a proxy's CA included) and uses its index, through files
# mounted for the RUN steps only: the CA bundle over the base's own, and /etc/pip.conf, which only the build stage
# of images/*.Dockerfile sees (its final stage runs nothing), so nothing of this machine is baked into an image.
build_mounts() {
  local ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
  [[ -f $ca ]] || die "no CA bundle at $ca (set SSL_CERT_FILE)"
  local conf
  conf=$(mktemp "${TMPDIR:-/tmp}/evomerge-pip.conf.XXXXXX")
  chmod 644 "$conf"
  {
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    [[ -n ${PIP_INDEX_URL-} ]] && echo "index-url = $PIP_INDEX_URL"
    [[ -n ${PIP_EXTRA_INDEX_URL-} ]] && echo "extra-index-url = $PIP_EXTRA_INDEX_URL"
    [[ -n ${PIP_TRUSTED_HOST-} ]] && echo "trusted-host = $PIP_TRUSTED_HOST"
    true
  } >"$conf"
  mounts=(--volume "$ca:/etc/ssl/certs/ca-certificates.crt:ro" --volume "$conf:/etc/pip.conf:ro")
  pip_conf=$conf
}

# The base every image names in FROM (both Dockerfiles must name the same one), fully qualified as podman resolves
# a Docker Hub short name: python:3.11.11-slim-bookworm is docker.io/library/python:3.11.11-slim-bookworm.
dockerfile_base() {
  local bases
  bases=$(awk 'toupper($1) == "FROM" {print $2}' "$repo_root"/images/*.Dockerfile | sort -u)
  [[ $(wc -l <<<"$bases") -eq 1 ]] || die "images/*.Dockerfile name different bases: $(tr '\n' ' ' <<<"$bases")"
  if [[ $bases != */* ]]; then
    echo "docker.io/library/$bases"
  elif [[ ${bases%%/*} != *.* && ${bases%%/*} != *:* && ${bases%%/*} != localhost ]]; then
    echo "docker.io/$bases"
  else
    echo "$bases"
  fi
}
