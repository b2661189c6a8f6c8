# Shared by the builds from Go modules under hack/ (controlplane/build.sh, kueue/build.sh); sourced after the caller
# defines log() and die().

# serialise_build LOCKFILE BUILT RESULT: one build at a time per cache. A caller that had to wait finds the other's
# build done (the function BUILT succeeds) and prints RESULT and exits; otherwise it returns holding the lock.
serialise_build() {
  local lock=$1 built=$2 result=$3
  mkdir -p "$(dirname "$lock")"
  exec 9>"$lock"
  if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
  fi
  if "$built"; then
    log "cached: $result"
    echo "$result"
    exit 0
  fi
}

# find_go MINOR: sets go_bin and go_version to the machine's Go toolchain (on PATH or /usr/local/go/bin/go), which must
# be go1.MINOR or newer, and exports the environment of a reproducible static build.
find_go() {
  local minor
  go_bin=$(command -v go || true)
  if [[ -z $go_bin && -x /usr/local/go/bin/go ]]; then
    go_bin=/usr/local/go/bin/go
  fi
  [[ -n $go_bin ]] || die "no Go toolchain found (need go >= 1.$1 on PATH or at /usr/local/go/bin/go)"
  export GOTOOLCHAIN=local   # never fetch another toolchain behind our back
  go_version=$("$go_bin" env GOVERSION)
  minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
  [[ $minor =~ ^[0-9]+$ && $minor -ge $1 ]] || die "$go_bin is $go_version; this build needs go >= 1.$1"
  export CGO_ENABLED=0
  export GOFLAGS="-mod=readonly -buildvcs=false -p=${GO_BUILD_PARALLELISM:-$(nproc)}"
}

# check_pin DIR MODULE VERSION: the go.mod in $here/DIR pins MODULE at VERSION, the version the caller's constant says.
check_pin() {
  local got
  got=$(cd "$here/$1" && "$go_bin" list -m -f '{{.Version}}' "$2") \
    || die "cannot read the version of $2 from $here/$1/go.mod"
  [[ $got == "$3" ]] || die "$here/$1/go.mod pins $2 $got but build.sh says $3; update one of them"
}

# new_staging PARENT: sets staging to a fresh directory under PARENT, removed at exit unless the caller publishes it
# (mv, then `trap - EXIT`), so a half-built directory is never mistaken for a cached one.
new_staging() {
  staging=$(mktemp -d "$1/.build.XXXXXX")
  chmod 755 "$staging"
  trap 'rm -rf "$staging"' EXIT
}
