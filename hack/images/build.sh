#!/usr/bin/env bash
# Builds the images from images/<name>.Dockerfile, unchanged, with podman, tagged as the chart's values name
# them (charts/evomerge/values.yaml image / workerImage, tag = the chart's appVersion):
#
#   hack/images/build.sh operator          the operator image (make test builds it: the tests run it)
#   hack/images/build.sh operator worker   both (make images)
#   hack/images/build.sh --print operator  the reference only, without building
#
# The FROM image is the stand-in that standin-base.sh builds (no container registry needed, as in CI); with
# EVOMERGE_BASE=official, podman pulls the official one from Docker Hub instead (for images you will push). The
# Dockerfiles are the same either way. A rebuild reuses podman's layer cache. Progress goes to stderr; stdout
# gets one line per image: its reference.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/podman-env.sh"

print_only=false
if [[ ${1-} == --print ]]; then
  print_only=true
  shift
fi
[[ $# -gt 0 ]] || die "usage: $0 [--print] operator|worker..."

chart=$repo_root/charts/evomerge
app_version=$(sed -nE 's/^appVersion: *"?([^"]+)"?.*/\1/p' "$chart/Chart.yaml")
reference() {  # the chart's repository for the image + the chart's appVersion
  local key
  case $1 in
    operator) key=image ;;
    worker) key=workerImage ;;
    *) die "no image '$1' (images/ has operator and worker)" ;;
  esac
  local repository
  repository=$(awk -v key="$key:" '$1 == key {found=1; next} found && $1 == "repository:" {print $2; exit}' "$chart/values.yaml")
  [[ -n $repository ]] || die "charts/evomerge/values.yaml has no $key.repository"
  echo "$repository:$app_version"
}

if $print_only; then
  for name in "$@"; do reference "$name"; done
  exit 0
fi

ensure_tools
case ${EVOMERGE_BASE:-standin} in
  standin) bash "$images_dir/standin-base.sh" >/dev/null ;;
  official) log "pulling the official base"; podman pull --quiet "$(dockerfile_base)" >/dev/null ;;
  *) die "EVOMERGE_BASE is '$EVOMERGE_BASE'; say standin (the default) or official" ;;
esac
build_mounts
trap 'rm -f "$pip_conf"' EXIT
for name in "$@"; do
  ref=$(reference "$name")
  started=$SECONDS
  log "building $ref from images/$name.Dockerfile"
  podman build --pull=never --network=host "${mounts[@]}" \
    --file "$repo_root/images/$name.Dockerfile" --ignorefile "$repo_root/images/$name.Dockerfile.dockerignore" \
    --tag "$ref" "$repo_root" >&2 || die "the $name image did not build"
  log "built $ref in $((SECONDS - started))s, $(podman image inspect --format '{{.Size}}' "$ref") bytes"
  echo "$ref"
done
