"""The operator image as built from images/operator.Dockerfile, run by podman: its entrypoint and non-root user on
a read-only root, what the chart's Deployment inherits from it, and the operator inside it reconciling a search on
the real control plane with the chart's ServiceAccount, as a pod of the chart's Deployment would."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import yaml
from kubernetes import client as k8s

from evomerge.k8s.client import Kube
from tests.k8s.test_operator import condition, eventually, search_body, status_of
from tests.support.podman import BuiltImage, podman
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "evomerge"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the kubelet mounts a pod's token


def restricted_run(image: BuiltImage, *args: str, user: str | None = None, network: str = "none") -> list[str]:
    """`podman run` as a restricted PodSecurity pod runs: read-only root, no capabilities, no privilege escalation
    (and no network unless asked: podman's bridge would need iptables on the machine)."""
    return ["run", "--rm", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", f"--network={network}",
            *(["--user", user] if user else []), *args]


def test_the_image_runs_its_entrypoint_read_only_as_a_fixed_non_root_user(operator_image):
    assert operator_image.entrypoint == ("evomerge",) and operator_image.user == "65532:65532"

    who = podman(*restricted_run(operator_image, "--entrypoint", "python", operator_image.reference,
                                 "-c", "import os; print(os.getuid(), os.getgid())"))
    helped = podman(*restricted_run(operator_image, operator_image.reference, "--help"))
    default = podman(*restricted_run(operator_image, operator_image.reference, *operator_image.cmd, "--help"))

    assert who.stdout.split() == ["65532", "65532"]
    assert "operator" in helped.stdout and "controller" in helped.stdout
    assert operator_image.cmd[0] == "operator" and "--liveness" in default.stdout


def test_the_image_holds_no_torch(operator_image):
    probe = "import importlib.util as u; print([m for m in ('torch', 'transformers', 'lm_eval') if u.find_spec(m)])"
    found = podman(*restricted_run(operator_image, "--entrypoint", "python", operator_image.reference, "-c", probe))
    assert found.stdout.strip() == "[]"


def test_the_charts_operator_container_runs_the_images_entrypoint_as_the_images_user(operator_image, helm, tmp_path):
    rendered = subprocess.run([str(helm), "template", "evo", str(CHART), "--namespace", "evomerge-system"],
                              capture_output=True, text=True, timeout=120, check=True).stdout
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert container["image"] == operator_image.reference  # the chart's default names what build.sh tags
    assert "command" not in container  # so the image's ENTRYPOINT runs: `evomerge <args>`
    assert container["args"][0] == operator_image.cmd[0]
    user = f'{pod["securityContext"]["runAsUser"]}:{pod["securityContext"]["runAsGroup"]}'
    assert user == operator_image.user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def _in_cluster_files(control_plane, api_client, namespace: str, account: str, directory: Path) -> Path:
    """What the kubelet projects into a pod for its ServiceAccount: a bound token, the cluster CA, the namespace."""
    token = k8s.CoreV1Api(api_client).create_namespaced_service_account_token(
        account, namespace, k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
    directory.mkdir()
    (directory / "token").write_text(token.status.token)
    (directory / "ca.crt").write_bytes(Path(control_plane.pki.ca_cert).read_bytes())
    (directory / "namespace").write_text(namespace)
    for path in [directory, *directory.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user, as the kubelet's fsGroup makes it
    return directory


def test_the_image_runs_the_charts_operator_against_the_control_plane(operator_image, control_plane, api_client,
                                                                       namespace, chart_release, tmp_path):
    """The chart's Deployment as the API server stored it, run as its pod would run: the image's entrypoint with the
    container's args and env, the pod's user, a read-only root with an emptyDir at /tmp, and in-cluster credentials
    of the chart's ServiceAccount. The host's network stands in for the pod network: the ports are free ones."""
    release, release_namespace = chart_release
    admin = Kube.connect(str(control_plane.kubeconfig))
    (deployment,) = admin.list("Deployment", release_namespace)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    metrics_port, health_port = free_port(), free_port()
    args = [f"--metrics-port={metrics_port}" if a.startswith("--metrics-port=") else
            f"--liveness=http://0.0.0.0:{health_port}/healthz" if a.startswith("--liveness=") else a for a in container["args"]]
    env = [f'{e["name"]}={e["value"]}' for e in container["env"] if e.get("value")]  # the kubelet drops empty values
    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    secrets = _in_cluster_files(control_plane, api_client, release_namespace, pod["serviceAccountName"], tmp_path / "sa")
    name = f"evomerge-operator-{uuid.uuid4().hex[:8]}"
    user = f'{pod["securityContext"]["runAsUser"]}:{pod["securityContext"]["runAsGroup"]}'
    started = podman(*restricted_run(operator_image, "--detach", "--name", name, "--tmpfs=/tmp",
                                     f"--volume={secrets}:{SERVICE_ACCOUNT_DIR}:ro",
                                     f"--env=KUBERNETES_SERVICE_HOST={host}", f"--env=KUBERNETES_SERVICE_PORT={port}",
                                     *(f"--env={e}" for e in env), container["image"], *args, user=user, network="host"))
    try:
        assert started.returncode == 0
        admin.create(search_body("imaged", namespace))

        status = eventually(lambda: status_of(admin, namespace, "imaged").get("phase") == "Running"
                            and status_of(admin, namespace, "imaged"), "the operator in the image to start the search",
                            timeout=180)

        assert condition(status, "Progressing")["status"] == "True" and status["observedGeneration"] == 1
        (job,) = admin.list("Job", namespace)
        assert job["metadata"]["name"] == status["controllerJob"]
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == dict(
            e.split("=", 1) for e in env)["EVOMERGE_WORKER_IMAGE"]
        healthz = podman("exec", name, "python", "-c",
                         f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{health_port}/healthz').status)")
        assert healthz.stdout.strip() == "200"
    finally:
        logs = podman("logs", name, check=False)
        podman("rm", "--force", "--time=10", name, check=False)
        admin.close()
        print(logs.stdout[-6000:], logs.stderr[-6000:])
