"""Fixtures of the end-to-end tests: a real control plane, the chart installed by helm, the test node.

Nothing is started in-process: `helm install` creates the operator's Deployment and RBAC; the test node
(tests/support/node.py) plays the kubelet for every pod, so the operator runs as `evomerge operator` with
the chart's ServiceAccount token, controller pods run `evomerge controller` with the token of the account
the operator bound, and evaluation and export pods run `evomerge evaluate-batch` / `export-model` with no
token at all. Every test here therefore exercises the chart's RBAC as well as the whole chain.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from kubernetes import client as k8s

from evomerge.evaluate.engines.vllm_process import cpu_server_python
from evomerge.k8s.client import Kube
from evomerge.k8s.settings import ClusterSettings
from tests.k8s.conftest import api_client, cluster_queue, control_plane, control_plane_bin_dir, kueue  # noqa: F401 - shared fixtures
from tests.support.node import Fault, Image, Node, PodRecord, dump, image_repository
from tests.support.podman import BuiltImage, operator_image  # noqa: F401 - a session fixture
from tests.support.ports import free_port
from tests.support.quick_start import QuickStart
from tests.support.zoo_tasks import write_fit_tasks

from .helpers import eventually

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "evomerge"
QUICK_START = QuickStart.from_readme()  # the chart is installed as the README's cluster quick start says
RELEASE, RELEASE_NAMESPACE = QUICK_START.release, QUICK_START.namespace
OUTPUT_CLAIM = "published"  # the PersistentVolumeClaim searches publish their merges to
PYTHON_IMAGE = "harness.test/python"


# ---- what the node has ---------------------------------------------------------------------------------
class Faults:
    """Failures the node injects, as (predicate over pod, container, attempt) → Fault rules."""

    def __init__(self) -> None:
        self.rules: list[tuple[Callable[[dict, str, int], bool], Fault]] = []

    def __call__(self, pod: dict, container: str, attempt: int) -> Fault | None:
        return next((fault for when, fault in list(self.rules) if when(pod, container, attempt)), None)

    def add(self, when: Callable[[dict, str, int], bool], fault: Fault) -> None:
        self.rules.append((when, fault))


@pytest.fixture(scope="session")
def faults() -> Faults:
    return Faults()


@pytest.fixture(scope="session")
def published(tmp_path_factory) -> Path:
    """The directory behind the `published` claim: exported merges land here."""
    return tmp_path_factory.mktemp("published")


@pytest.fixture(scope="session")
def images(operator_image: BuiltImage) -> dict[str, Image]:
    """The images the quick start's `helm install` names, as the local venv with the entrypoint of the operator image
    as built (`evomerge`; tests/images checks the worker's Dockerfile names the same). The vLLM server image is the
    real CPU build of the pinned release (hack/vllm/install.sh), with a small KV cache."""
    # PYTHONPATH: the pods run this checkout's code, not whichever checkout the venv was installed from
    sources = (("PYTHONPATH", str(REPO / "operator")),)
    venv = Image(path=(Path(sys.executable).parent,), entrypoint=operator_image.entrypoint, env=sources)
    python = Image(path=(Path(sys.executable).parent,), entrypoint=("python",), env=sources)  # for the node's own tests
    vllm = Image(path=(cpu_server_python().parent,), env=(("VLLM_CPU_KVCACHE_SPACE", "1"),))
    overrides = QUICK_START.overrides
    return {overrides["image.repository"]: venv, overrides["workerImage.repository"]: venv, PYTHON_IMAGE: python,
            image_repository(ClusterSettings().server_image("vllm")): vllm}


@pytest.fixture(scope="session")
def node(request, control_plane, tmp_path_factory, images, published, faults):  # noqa: F811
    """The one node of the cluster: it plays every pod (see tests/support/node.py). At the end it prints
    what the pods cost in CPU time, by component: where the suite's time goes."""
    api = control_plane.api_client()
    playing = Node(api, control_plane.server, tmp_path_factory.mktemp("node"), images,
                   claims={OUTPUT_CLAIM: published}, faults=faults).start()
    yield playing
    playing.stop()
    api.close()
    _print_costs(request.config, playing.pods())
    assert not playing.errors, "the test node failed:\n" + "\n".join(playing.errors)


COSTS = pytest.StashKey[list[str]]()


def _print_costs(config, records: list[PodRecord]) -> None:
    """Kept for pytest_terminal_summary (output of a fixture's teardown would be captured)."""
    costs: dict[str, list[float]] = {}
    for record in records:
        component = record.labels.get("evomerge.dev/component") or record.labels.get("app.kubernetes.io/component") or "other"
        costs.setdefault(component, []).append(sum(c.cpu_seconds for c in record.containers.values()))
    config.stash[COSTS] = [f"{component:>12}: {sum(seconds):7.1f} s in {len(seconds)} pods"
                           for component, seconds in sorted(costs.items(), key=lambda item: -sum(item[1]))]


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(COSTS, [])
    if lines:
        terminalreporter.write_sep("-", "CPU seconds of the pods the test node ran")
        for line in lines:
            terminalreporter.write_line(line)


# ---- the chart, installed --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def helm(control_plane_bin_dir, control_plane, tmp_path_factory):  # noqa: F811
    """`helm` with the admin kubeconfig and private cache/config directories."""
    home = tmp_path_factory.mktemp("helm")
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(control_plane_bin_dir / "helm"), *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)

    return run


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    metrics_port: int
    health_port: int
    operator_account: str
    controller_role: str


@pytest.fixture(scope="session")
def release(helm, control_plane, api_client, node) -> Release:  # noqa: F811
    """`helm install` of the chart as the README's cluster quick start says, but free ports (the node shares this
    host's network, the evaluation pods' servers included) and a short resync; the CRDs come from the chart's crds/."""
    metrics_port, health_port = free_port(), free_port()
    installed = helm(*QUICK_START.helm_install_of(CHART),
                     "--set", f"metrics.port={metrics_port}", "--set", f"health.port={health_port}",
                     "--set", f"servers.port={free_port()}",
                     "--set", "operator.resyncSeconds=5", "--set", "operator.logFormat=plain")
    assert installed.returncode == 0, installed.stderr
    kube = Kube.connect(str(control_plane.kubeconfig))

    def served() -> bool:
        try:
            return all(kube.list(kind, RELEASE_NAMESPACE) is not None for kind in ("MergeSearch", "MergedModel", "Expert"))
        except Exception:  # noqa: BLE001 - discovery lags a moment behind the Established condition
            return False

    eventually(served, "the chart's CRDs to be served", timeout=60)
    kube.close()
    yield Release(RELEASE, RELEASE_NAMESPACE, metrics_port, health_port, f"{RELEASE}-operator", f"{RELEASE}-controller")
    helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE)


class OperatorPod:
    """The chart's operator pod as the node runs it: crash it, or delete it and let its ReplicaSet replace it."""

    def __init__(self, node: Node, release: Release):
        self.node, self.release = node, release

    def record(self) -> PodRecord:
        """The newest operator pod running (a deleted one may still be stopping)."""
        return eventually(lambda: self.node.running(self._mine), "the operator pod to run", timeout=60)[-1]

    def _mine(self, record: PodRecord) -> bool:
        return record.namespace == self.release.namespace and record.labels.get("app.kubernetes.io/component") == "operator"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.release.health_port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_healthy(self) -> None:
        eventually(self.healthy, f"the operator's /healthz to answer; pods:\n{dump(self.node.pods(self._mine))}", timeout=90)

    def crash(self) -> PodRecord:
        """SIGKILL the operator process; the node restarts the container in place (restartPolicy Always)."""
        record = self.record()
        before = record.containers["operator"].restarts
        assert self.node.kill(record, "operator", signal.SIGKILL)
        eventually(lambda: record.containers["operator"].restarts > before, "the operator container to restart")
        return record

    def log(self) -> str:
        return "\n\n".join(self.node.log(r, "operator") for r in self.node.pods(self._mine))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.release.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()


@pytest.fixture(scope="session")
def operator(release, node) -> OperatorPod:
    pod = OperatorPod(node, release)
    pod.wait_healthy()
    return pod


@pytest.fixture(scope="session")
def kube(control_plane):  # noqa: F811
    """The tests' own client, as the cluster admin (they look; the operator and its pods do the work)."""
    connection = Kube.connect(str(control_plane.kubeconfig))
    yield connection
    connection.close()


@pytest.fixture
def namespace(request, api_client, operator) -> str:  # noqa: F811
    """A fresh namespace per test (deleted afterwards), once its default ServiceAccount exists."""
    core = k8s.CoreV1Api(api_client)
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    eventually(lambda: _exists(core, name), f"the default ServiceAccount of {name}", timeout=30)
    yield name
    core.delete_namespace(name)


def _exists(core: k8s.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
        return True
    except k8s.ApiException as error:
        if error.status != 404:
            raise
        return False


# ---- the models and tasks ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def zoo():
    from evomerge.zoo import build_zoo

    return build_zoo("nano", seed=0)


@pytest.fixture(scope="session")
def fit_tasks(zoo, tmp_path_factory) -> Path:
    return write_fit_tasks(zoo, tmp_path_factory.mktemp("tasks"))


def pytest_runtest_makereport(item, call):
    """On failure, attach what the node ran and the operator's log tail (the first place to look)."""
    if call.when != "call" or call.excinfo is None:
        return
    node = item.funcargs.get("node") if hasattr(item, "funcargs") else None
    operator = item.funcargs.get("operator") if hasattr(item, "funcargs") else None
    if node is not None:
        namespace = item.funcargs.get("namespace")
        records = node.pods(lambda r: namespace is None or r.namespace == namespace)
        item.add_report_section("call", "test node", dump(records)[-20000:])
    if operator is not None:
        item.add_report_section("call", "operator log", operator.log()[-8000:])


# ---- the reference searches -------------------------------------------------------------------------------
CHAIN_ALGORITHMS = ("evogm", "random")


@dataclass
class ChainRun:
    """A finished search of the chain test: what the cluster and the node showed at its end."""

    namespace: str
    name: str
    body: dict
    status: dict
    model: dict
    history: list[dict]
    pods: list[PodRecord]


@pytest.fixture(scope="session")
def chain(kube, operator, node, api_client, zoo, fit_tasks) -> dict[str, ChainRun]:  # noqa: F811
    """One search per algorithm, run at once to the end in one namespace, each publishing a MergedModel.
    The chain test inspects them; the controller-restart test compares its resumed run with them."""
    from .helpers import finished, history, nano_search, status_of

    core = k8s.CoreV1Api(api_client)
    namespace = f"chain-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    eventually(lambda: _exists(core, namespace), f"the default ServiceAccount of {namespace}", timeout=30)
    bodies = {a: nano_search(a, namespace, zoo, fit_tasks, algorithm=a) for a in CHAIN_ALGORITHMS}
    for body in bodies.values():
        kube.create(body)
    runs = {}
    for algorithm, body in bodies.items():
        status = finished(kube, namespace, algorithm)
        model = eventually(lambda: status_of(kube, namespace, algorithm, "MergedModel").get("phase") in ("Ready", "Failed")
                           and kube.get("MergedModel", namespace, algorithm), f"MergedModel {algorithm} to be exported", 240,
                           detail=lambda: (status_of(kube, namespace, algorithm, "MergedModel"), operator.log()[-6000:]))
        runs[algorithm] = ChainRun(namespace, algorithm, body, status, model, history(kube, namespace, algorithm),
                                   node.pods(lambda r, a=algorithm: r.namespace == namespace and r.labels.get("evomerge.dev/search") == a
                                             or r.labels.get("evomerge.dev/merged-model") == a and r.namespace == namespace))
    yield runs
    core.delete_namespace(namespace)
