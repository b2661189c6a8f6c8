"""Kueue's own controller for tests: its manager, built from its Go module by hack/kueue/build.sh, run as a process
against a test control plane, with Kueue's CRDs installed as its kustomization installs them.

What differs from Kueue's manifests, and why:
- No admission webhooks are registered with the API server. Kueue serves them (on 127.0.0.1, with the certificates
  its internal cert management issues), but the API server would call them at the `kueue-webhook-service` Service,
  and the test control plane routes no Service traffic (there is no kube-proxy). The webhook Kueue would apply to
  evomerge's Jobs — creating a Job labelled `kueue.x-k8s.io/queue-name` suspended — is what the operator does
  itself, so admission and everything after it are Kueue's own code.
- The CRDs' conversion webhooks point at that same Service (as Kueue's patches write them); the API server calls them
  only to convert between v1beta1 and v1beta2, and everything here speaks v1beta2, the version stored.
- The test plays the kubelet's one part: the Secret Kueue's cert rotator fills is written into the manager's webhook
  certDir, as the Deployment's secret volume would mount it.
- One manager, no leader election; only the batch/job integration; the visibility API server (an aggregated API
  the tests do not read) is off.

    kueue = Kueue.start(build_dir, control_plane, workdir)
    kueue.quota("team-a", cpu="0", memory="0")       # a ClusterQueue with a closed quota ...
    kueue.local_queue("ns", "team-a")                # ... and a LocalQueue in a namespace
    kueue.stop()
"""

from __future__ import annotations

import base64
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client as k8s

from tests.support.controlplane import ControlPlane, _Process, _wait_until
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "kueue" / "build.sh"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
NAMESPACE = "kueue-system"
WEBHOOK_SERVICE, WEBHOOK_SECRET = "kueue-webhook-service", "kueue-webhook-server-cert"
# The CRDs Kueue's config/components/crd/kustomization.yaml patches with a conversion webhook.
CONVERTED = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
FLAVOR = "default-flavor"


def build() -> Path:
    """The cache directory of hack/kueue/build.sh (bin/kueue and crds/), built if missing."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit code {done.returncode}:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def install_crds(api: k8s.ApiClient, crd_dir: Path) -> None:
    """Kueue's CRDs as its kustomization writes them: the bases, with the conversion webhook patches."""
    extensions = k8s.ApiextensionsV1Api(api)
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["plural"] in CONVERTED:
            crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                "clientConfig": {"service": {"namespace": NAMESPACE, "name": WEBHOOK_SERVICE, "path": "/convert"}},
                "conversionReviewVersions": ["v1"]}}
        extensions.create_custom_resource_definition(crd)
        names.append(crd["metadata"]["name"])

    def established() -> bool:
        return all(any(c.type == "Established" and c.status == "True"
                       for c in (extensions.read_custom_resource_definition(n).status.conditions or []))
                   for n in names)
    _poll(established, "Kueue's CRDs to be established")


@dataclass
class Kueue:
    """A running Kueue manager; see the module docstring."""

    process: _Process
    api: k8s.ApiClient
    metrics_port: int
    health_port: int

    @classmethod
    def start(cls, build_dir: Path, plane: ControlPlane, workdir: Path, timeout: float = 180.0) -> Kueue:
        """Installs the CRDs, starts the manager and returns once it reports ready (its certificates issued, its
        webhook server listening, its caches synced)."""
        api = plane.api_client()
        install_crds(api, build_dir / "crds")
        core = k8s.CoreV1Api(api)
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE)))
        # Kueue's internal cert management fills this Secret (its manifests create it empty, too).
        core.create_namespaced_secret(NAMESPACE, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=WEBHOOK_SECRET)))
        metrics_port, health_port = free_port(), free_port()
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
            "namespace": NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
            "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
            "webhook": {"host": "127.0.0.1", "port": free_port(), "certDir": str(workdir / "webhook-certs")},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": True, "webhookServiceName": WEBHOOK_SERVICE,
                                       "webhookSecretName": WEBHOOK_SECRET},
            "integrations": {"frameworks": ["batch/job"]},
        }
        config_path = workdir / "kueue-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        process = _Process.spawn("kueue", [
            str(build_dir / "bin" / "kueue"), f"--config={config_path}", f"--kubeconfig={plane.kubeconfig}",
            "--feature-gates=VisibilityOnDemand=false", "--zap-log-level=info",
        ], workdir)
        kueue = cls(process, api, metrics_port, health_port)
        try:
            certificates = _wait_until(lambda: _issued(core), timeout=timeout, process=process,
                                       what=f"Kueue to issue its webhook certificate into Secret {WEBHOOK_SECRET}")
            _mount(certificates, Path(config["webhook"]["certDir"]))
            _wait_until(kueue.ready, timeout=timeout, process=process, what="Kueue's manager to be ready")
        except BaseException:
            kueue.stop()
            raise
        return kueue

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=5) as response:
            return response.status == 200

    def stop(self) -> None:
        self.process.stop()
        self.api.close()

    def version(self) -> str:
        """The release the manager logged at start ("Initializing", gitVersion)."""
        for line in self.process.log_path.read_text(errors="replace").splitlines():
            if '"Initializing"' in line and "gitVersion" in line:
                return line.split('"gitVersion":"', 1)[1].split('"', 1)[0]
        return ""

    # ---- queues ------------------------------------------------------------------------------------------
    def quota(self, cluster_queue: str, **nominal: str) -> None:
        """Creates or updates the ClusterQueue `cluster_queue` (for every namespace) with these nominal quotas
        (resource → quantity) of the one ResourceFlavor; the flavor is created the first time."""
        objects = k8s.CustomObjectsApi(self.api)
        if not self._exists("resourceflavors", FLAVOR):
            objects.create_cluster_custom_object(GROUP, VERSION, "resourceflavors", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}})
        groups = [{"coveredResources": sorted(nominal), "flavors": [{"name": FLAVOR, "resources": [
            {"name": name, "nominalQuota": quantity} for name, quantity in sorted(nominal.items())]}]}]
        if self._exists("clusterqueues", cluster_queue):
            objects.patch_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue,
                                                {"spec": {"resourceGroups": groups}})
            return
        objects.create_cluster_custom_object(GROUP, VERSION, "clusterqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue", "metadata": {"name": cluster_queue},
            "spec": {"namespaceSelector": {}, "resourceGroups": groups}})

    def local_queue(self, namespace: str, name: str, cluster_queue: str | None = None) -> None:
        k8s.CustomObjectsApi(self.api).create_namespaced_custom_object(GROUP, VERSION, namespace, "localqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue or name}})

    def delete_cluster_queue(self, name: str) -> None:
        k8s.CustomObjectsApi(self.api).delete_cluster_custom_object(GROUP, VERSION, "clusterqueues", name)

    def workloads(self, namespace: str) -> list[dict]:
        return k8s.CustomObjectsApi(self.api).list_namespaced_custom_object(GROUP, VERSION, namespace, "workloads")["items"]

    def _exists(self, plural: str, name: str) -> bool:
        try:
            k8s.CustomObjectsApi(self.api).get_cluster_custom_object(GROUP, VERSION, plural, name)
        except k8s.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True


def _issued(core: k8s.CoreV1Api) -> dict[str, str] | None:
    """The Secret's keys once Kueue's cert rotator has filled it."""
    data = core.read_namespaced_secret(WEBHOOK_SECRET, NAMESPACE).data or {}
    return data if "tls.crt" in data and "tls.key" in data else None


def _mount(data: dict[str, str], directory: Path) -> None:
    """The kubelet's part: Kueue's Deployment mounts the Secret as a volume at its webhook certDir, and the rotator
    waits for the files to appear there before it reports its certificates ready."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in data.items():
        staged = directory / f".{key}"
        staged.write_bytes(base64.b64decode(value))
        staged.chmod(0o600)
        staged.rename(directory / key)


def _poll(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)

