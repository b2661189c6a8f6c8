#!/usr/bin/env bash
# Builds kstatus-check (main.go beside this script): kstatus itself, the status library of Flux and `helm --wait`
# (sigs.k8s.io/cli-utils, pinned by go.mod/go.sum here), so tests judge the operator's status with kstatus' own
# code. Cached in ${EVOMERGE_CACHE:-$HOME/.cache/evomerge}/kstatus/<version>/; the last line on stdout is the binary.
# A cold build downloads the module and its dependencies and compiles them: about 1 CPU-minute.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(awk '$1 == "sigs.k8s.io/cli-utils" {print $2}' "$here/go.mod")
out=${EVOMERGE_CACHE:-$HOME/.cache/evomerge}/kstatus/cli-utils-$version
binary=$out/kstatus-check
source_hash=$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)

if [[ -x $binary && -f $out/source.sha256 && $(cat "$out/source.sha256") == "$source_hash" ]]; then
  echo "$binary"
  exit 0
fi
go_bin=$(command -v go || echo /usr/local/go/bin/go)
[[ -x $go_bin ]] || { echo "kstatus build: no Go toolchain (go on PATH or /usr/local/go/bin/go)" >&2; exit 1; }
mkdir -p "$out"
(cd "$here" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly "$go_bin" build -trimpath -o "$binary.tmp" .) >&2
mv "$binary.tmp" "$binary"
echo "$source_hash" > "$out/source.sha256"
echo "$binary"
