"""Fixtures for tests against a real control plane (etcd + kube-apiserver + kube-controller-manager).

The binaries are built once per machine by hack/controlplane/build.sh (cached; the first build takes
minutes). A missing or broken control plane fails the tests: it is never a reason to skip them.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support import kueue as kueue_process
from tests.support.controlplane import ControlPlane
from tests.support.setup_scripts import run_setup_script

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "controlplane" / "build.sh"


@pytest.fixture(scope="session")
def control_plane_bin_dir(request) -> Path:
    """The directory with etcd, kube-apiserver, kube-controller-manager and helm (built if missing).
    A cold build takes minutes, so its progress is shown live rather than captured."""
    stdout = run_setup_script(request, BUILD_SCRIPT)
    return Path(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def control_plane(control_plane_bin_dir, tmp_path_factory):
    """One control plane for the whole session; its `.kubeconfig` is the cluster admin's."""
    workdir = tmp_path_factory.mktemp("controlplane")
    try:
        plane = ControlPlane.start(control_plane_bin_dir, workdir=workdir)
    except Exception as error:
        pytest.fail(f"the test control plane did not start: {error}", pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def kueue(control_plane, tmp_path_factory):
    """Kueue's own controller (built from its Go module by hack/kueue/build.sh, which `make controlplane` runs) on the
    session's control plane; see tests/support/kueue.py for how it is run. Missing or broken, it fails the tests."""
    try:
        build = kueue_process.build()
        running = kueue_process.Kueue.start(build, control_plane, tmp_path_factory.mktemp("kueue"))
    except Exception as error:
        pytest.fail(f"Kueue's controller did not start: {error}", pytrace=False)
    yield running
    running.stop()


@pytest.fixture
def cluster_queue(kueue, namespace):
    """The name of a ClusterQueue of this test's own (its quota closed until the test opens it), with a LocalQueue of
    the same name in the test's namespace; deleted afterwards."""
    kueue.quota(namespace, cpu="0", memory="0")
    kueue.local_queue(namespace, namespace)
    yield namespace
    kueue.delete_cluster_queue(namespace)


@pytest.fixture(scope="session")
def api_client(control_plane):
    """A `kubernetes.client.ApiClient` authenticated as the cluster admin."""
    with control_plane.api_client() as client:
        yield client


@pytest.fixture
def namespace(request, api_client) -> str:
    """A fresh namespace for one test, deleted afterwards. Returned once its default ServiceAccount
    exists, because pods (also those a Job controller creates) are refused until it does."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield name
    core.delete_namespace(name)


@pytest.fixture
def chart_release(control_plane, control_plane_bin_dir, api_client, namespace, tmp_path):
    """The chart installed in its own namespace, watching the test's: (release name, its namespace)."""
    core = k8s.CoreV1Api(api_client)
    release_namespace = f"evomerge-system-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=release_namespace)))
    name = f"evo-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig), "HELM_CACHE_HOME": str(tmp_path / "c"),
           "HELM_CONFIG_HOME": str(tmp_path / "f"), "HELM_DATA_HOME": str(tmp_path / "d")}
    helm = str(control_plane_bin_dir / "helm")
    installed = subprocess.run([helm, "install", name, str(REPO / "charts" / "evomerge"), "-n", release_namespace,
                                "--set", f"watchNamespaces={{{namespace}}}"], env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    yield name, release_namespace
    subprocess.run([helm, "uninstall", name, "-n", release_namespace], env=env, capture_output=True, text=True)
    core.delete_namespace(release_namespace)
