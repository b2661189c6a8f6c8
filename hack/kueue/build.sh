#!/usr/bin/env bash
# Builds Kueue's own manager (sigs.k8s.io/kueue/cmd/kueue, pinned by go.mod/go.sum beside this script) from its Go
# module with the machine's Go toolchain, and copies Kueue's CRDs out of the same module, so the tests run the real
# Kueue controller against the test control plane. Nothing of Kueue is committed here: the module cache is the source.
#
# Cached in ${EVOMERGE_CACHE:-$HOME/.cache/evomerge}/kueue/<version>/ (bin/kueue and crds/*.yaml); a second run is a
# no-op. Progress goes to stderr; the last line on stdout is the cache directory.
#
# Moving to another Kueue release: (cd hack/kueue && go get -tool sigs.k8s.io/kueue/cmd/kueue@vX.Y.Z && go mod tidy)
# and update KUEUE_VERSION below (checked against go.mod).
#
# Measured (2 cores): a cold build (empty Go module and build caches) downloads 737 MB of modules in 9 s and
# compiles for 8.5 CPU-minutes (431 s user + 78 s sys; it took 33 min of wall time only because the machine ran
# other work at a load of 20); with Go's build cache warm it takes 35 s, and with the result cached 0.04 s.
set -euo pipefail

KUEUE_VERSION=v0.19.2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${EVOMERGE_CACHE:-$HOME/.cache/evomerge}
out=$cache_root/kueue/kueue-$KUEUE_VERSION

log() { printf '[kueue build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=../lib/go_build.sh
source "$here/../lib/go_build.sh"

[[ $# -eq 0 ]] || die "unknown argument '$1' (usage: $0)"

built() { [[ -x $out/bin/kueue && -f $out/crds/kueue.x-k8s.io_clusterqueues.yaml ]]; }

if built; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

serialise_build "$cache_root/kueue/.build.lock" built "$out"
find_go 26  # Kueue $KUEUE_VERSION's go.mod says go 1.26.0

check_pin . sigs.k8s.io/kueue "$KUEUE_VERSION"
new_staging "$cache_root/kueue"
started=$SECONDS

log "downloading modules"
(cd "$here" && nice -n 10 "$go_bin" mod download) || die "go mod download failed in $here"
module_dir=$(cd "$here" && "$go_bin" list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
log "modules ready after $((SECONDS - started))s"

# The version stamps of Kueue's Makefile, so the manager logs the release it is.
commit=$(cd "$here" && "$go_bin" mod download -json sigs.k8s.io/kueue@"$KUEUE_VERSION" \
  | sed -nE 's/.*"Hash": "([0-9a-f]+)".*/\1/p')
ldflags="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION"
ldflags+=" -X sigs.k8s.io/kueue/pkg/version.GitCommit=${commit:-unknown} -X sigs.k8s.io/kueue/pkg/version.BuildDate=1970-01-01T00:00:00Z"
log "building sigs.k8s.io/kueue/cmd/kueue (a cold build takes minutes)"
(cd "$here" && nice -n 10 "$go_bin" build -trimpath -ldflags "$ldflags" -o "$staging/bin/kueue" sigs.k8s.io/kueue/cmd/kueue) \
  || die "go build of sigs.k8s.io/kueue/cmd/kueue failed"
log "built after $((SECONDS - started))s"

mkdir -p "$staging/crds"
cp "$module_dir"/config/components/crd/bases/*.yaml "$staging/crds/"
chmod 644 "$staging"/crds/*.yaml
"$staging/bin/kueue" --help >/dev/null 2>&1 || die "the built kueue manager does not run"

# Publish atomically: a half-built directory is never mistaken for a cached one.
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
log "done in $((SECONDS - started))s: $out"
echo "$out"
