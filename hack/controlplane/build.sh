#!/usr/bin/env bash
# Builds the binaries of the test control plane from their Go modules with the machine's Go toolchain:
# kube-apiserver and kube-controller-manager (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and
# helm (helm.sh/helm/v3). The versions are pinned by the go.mod/go.sum files in kubernetes/ and helm/
# beside this script; the constants below must agree with them (checked).
#
# Binaries are cached in ${EVOMERGE_CACHE:-$HOME/.cache/evomerge}/controlplane/<versions>/bin, so a
# second run is a no-op. Progress goes to stderr; the last line on stdout is the bin directory.
#
#   hack/controlplane/build.sh                 build (or reuse) and print the bin directory
#   hack/controlplane/build.sh --print-bin-dir print the bin directory without building
#
# Moving to another Kubernetes release: k8s.io/kubernetes requires its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at v0.0.0 and replaces them with local paths, which a dependent module cannot
# see; so kubernetes/go.mod replaces each of them with its published v0.<minor>.<patch> (one line per
# `replace ... => ./staging/...` in k8s.io/kubernetes' own go.mod), then
#   (cd kubernetes && go get -tool k8s.io/kubernetes/cmd/kube-apiserver@vX.Y.Z \
#      k8s.io/kubernetes/cmd/kube-controller-manager@vX.Y.Z go.etcd.io/etcd/server/v3@<the etcd it requires> \
#    && go mod tidy)
#   (cd helm && go get -tool helm.sh/helm/v3/cmd/helm@vA.B.C && go mod tidy)
# and update the constants below. A cold build costs about 12-14 CPU-minutes (12 min wall on 2 cores).
set -euo pipefail

KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.7.0
HELM_VERSION=v3.22.0
BINARIES=(etcd kube-apiserver kube-controller-manager helm)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${EVOMERGE_CACHE:-$HOME/.cache/evomerge}
bin_dir=$cache_root/controlplane/kubernetes-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin

log() { printf '[controlplane build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=../lib/go_build.sh
source "$here/../lib/go_build.sh"

if [[ ${1-} == --print-bin-dir ]]; then
  echo "$bin_dir"
  exit 0
elif [[ $# -gt 0 ]]; then
  die "unknown argument '$1' (usage: $0 [--print-bin-dir])"
fi

all_built() {
  local name
  for name in "${BINARIES[@]}"; do
    [[ -x $bin_dir/$name ]] || return 1
  done
}

if all_built; then
  log "cached: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

serialise_build "$cache_root/controlplane/.build.lock" all_built "$bin_dir"
find_go 26  # Kubernetes $KUBERNETES_VERSION needs go >= 1.26

new_staging "$cache_root/controlplane"

started=$SECONDS
log "building into $bin_dir with $go_version ($GOFLAGS)"

log "downloading modules (kubernetes, etcd, helm)"
(cd "$here/kubernetes" && nice -n 10 "$go_bin" mod download) || die "go mod download failed in $here/kubernetes"
(cd "$here/helm" && nice -n 10 "$go_bin" mod download) || die "go mod download failed in $here/helm"
check_pin kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
check_pin kubernetes go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin helm helm.sh/helm/v3 "$HELM_VERSION"
log "modules ready after $((SECONDS - started))s"

build() {  # module dir, output dir, ldflags, packages...
  local dir=$1 out=$2 ldflags=$3 step=$SECONDS
  shift 3
  log "building $* (a cold build takes minutes)"
  (cd "$here/$dir" && nice -n 10 "$go_bin" build -trimpath -ldflags "-s -w $ldflags" -o "$out" "$@") \
    || die "go build of $* failed"
  log "built $* in $((SECONDS - step))s"
}

# The same version stamps as Kubernetes' hack/lib/version.sh, so /version and helm see a real release.
kube_minor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")
kube_ldflags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# One invocation for the three: the Go scheduler overlaps one binary's (single-threaded) link with the
# compilation of the others. go names the etcd binary after go.etcd.io/etcd/server/v3: "server".
build kubernetes "$staging/" "$kube_ldflags" \
  go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
mv "$staging/server" "$staging/etcd"

# Helm's Makefile stamps its version and the Kubernetes version its client library targets.
helm_client_go=$(cd "$here/helm" && "$go_bin" list -m -f '{{.Version}}' k8s.io/client-go)
helm_k8s_minor=$(cut -d. -f2 <<<"$helm_client_go")
build helm "$staging/helm" \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean
   -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor
   -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor" \
  helm.sh/helm/v3/cmd/helm

log "checking the binaries run"
"$staging/etcd" --version | grep -q "etcd Version: ${ETCD_VERSION#v}" || die "etcd --version does not say ${ETCD_VERSION#v}"
"$staging/kube-apiserver" --version | grep -qx "Kubernetes $KUBERNETES_VERSION" || die "kube-apiserver --version is wrong"
"$staging/kube-controller-manager" --version | grep -qx "Kubernetes $KUBERNETES_VERSION" \
  || die "kube-controller-manager --version is wrong"
"$staging/helm" version --short | grep -q "^$HELM_VERSION" || die "helm version does not say $HELM_VERSION"

# Publish atomically: a half-built directory is never mistaken for a cached one.
mkdir -p "$(dirname "$bin_dir")"
rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
trap - EXIT
log "done in $((SECONDS - started))s: $bin_dir"
echo "$bin_dir"
