"""The node of the test control plane: the harness plays the kubelet (and, where it must, the scheduler).

There is no kubelet and no scheduler in the test cluster, so pods stay Pending until `Node` takes them. It
watches every pod (or those `plays` selects) and does with local processes what a kubelet would:

- volumes are materialised as directories under the node's work directory: ConfigMap, Secret, emptyDir,
  downwardAPI, projected (ServiceAccount token, kube-root-ca.crt, namespace), hostPath, and
  PersistentVolumeClaims mapped to local directories by claim name. A claim the node does not have keeps
  the pod Pending with PodScheduled=False/Unschedulable, as the scheduler reports it; a missing ConfigMap
  or Secret is retried, as the kubelet retries a mount.
- each container gets its own root directory in which every mountPath (and its terminationMessagePath)
  is a link to the volume; absolute paths in its command, args, env values and workingDir that lie under a
  mountPath, or above one (`/mnt/pvc` above `/mnt/pvc/claim`), are rewritten into that root — at the start
  of a value or after `=` or `,`. Other paths are left alone: they are the node's own files, as a hostPath.
- images map to local directories that go first on PATH (`image` → the venv's bin directory) and to an
  entrypoint for containers without a command; an image the node does not have never starts (ErrImagePull,
  then ImagePullBackOff), as on a real node.
- API access: when the pod mounts a ServiceAccount token (the ServiceAccount admission plugin adds the
  projected volume unless automountServiceAccountToken is false), the token is a real one bound to the pod
  (TokenRequest), and the process gets KUBECONFIG pointing at a kubeconfig with that token file and the
  cluster CA from the mounted kube-root-ca.crt: in-cluster config, translated for a local process. Pods
  without the token get no credentials at all: the environment is built from the pod spec alone.
- lifecycle: init containers in order; init containers with restartPolicy Always are native sidecars
  (started, startupProbe awaited, restarted if they exit, stopped in reverse order after the main
  containers end); then the main containers together, restarted in place as the pod's restartPolicy says.
  The termination message is the file at terminationMessagePath (4096 bytes at most), or with
  FallbackToLogsOnError and a failure, the log tail.
- status is written through the pods/status subresource as the kubelet writes it: phase, conditions, podIP
  (127.0.0.1: the host's network), initContainerStatuses and containerStatuses with waiting/running/terminated states, exit codes, reasons
  and messages — so kube-controller-manager's Job controller sees pods succeed or fail, retries them, and
  enforces activeDeadlineSeconds (it deletes the pod; the node then stops its processes).

Faults a node can suffer are injected with `faults`: a function of (pod, container name, attempt) that
returns a `Fault` (the container is killed with a signal, e.g. an OOM kill) or None; `kill()` does the same
on demand. Differences from a kubelet, none of which the operator may rely on: processes share the host's
network and user (no namespaces, no runAsUser, read-only mounts are not enforced), pods are never bound to a
node (so deleting one is immediate), liveness and readiness probes are not run, and restarts back off 1 s.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import ctypes
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from kubernetes import client

MESSAGE_LIMIT = 4096  # bytes of a termination message the kubelet keeps
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048  # the log tail FallbackToLogsOnError uses
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
DEFAULT_GRACE_SECONDS = 30
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
RESTART_BACKOFF_SECONDS = 1.0  # the kubelet starts at 10 s; the tests need no more than a pause


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _die_with_parent() -> None:
    # Between fork and exec: a container process must not outlive a test session killed outright.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ---- what the node has: images, claims, faults --------------------------------------------------------
@dataclass(frozen=True)
class Image:
    """A local stand-in for a container image: directories that go first on PATH, an entrypoint, env."""

    path: tuple[Path, ...]
    entrypoint: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def image_repository(reference: str) -> str:
    """`ghcr.io/org/name:tag` or `…@sha256:…` → `ghcr.io/org/name` (a port in the registry is kept)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


@dataclass(frozen=True)
class Fault:
    """An injected failure of one container: killed with `signal` `after_seconds` after it starts.
    `reason` is what the kubelet reports (OOMKilled for the kernel's OOM killer, Error otherwise)."""

    signal: int = signal.SIGKILL
    after_seconds: float = 0.0
    reason: str = "Error"


FaultPlan = Callable[[dict, str, int], "Fault | None"]


# ---- records of what ran ------------------------------------------------------------------------------
@dataclass
class ContainerRecord:
    name: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    credentials: bool = False  # got a kubeconfig for a ServiceAccount token
    exit_code: int | None = None
    reason: str | None = None
    message: str = ""
    log: Path | None = None
    restarts: int = 0
    cpu_seconds: float = 0.0  # user + system time of its processes (all restarts), for cost reports


@dataclass
class PodRecord:
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    owner: tuple[str, str] | None  # (kind, name) of the controlling owner
    attempt: int  # index of this pod among the pods of its owner that the node played
    spec: dict[str, Any]
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    phase: str = "Pending"
    waiting_reason: str | None = None  # why it never started, when it did not

    @property
    def job(self) -> str | None:
        return self.owner[1] if self.owner and self.owner[0] == "Job" else None


# ---- path mapping --------------------------------------------------------------------------------------
_PATH_TOKEN = re.compile(r"(^|[=,])(/[^\s=,]*)")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class PathMap:
    """Container paths → local paths: everything at, under or above a mount point moves into the root."""

    def __init__(self, root: Path, mount_points: Iterable[str]):
        self.root = root
        self.points = sorted({os.path.normpath(p) for p in mount_points})

    def local(self, path: str) -> str:
        normal = os.path.normpath(path)
        for point in self.points:
            if _under(normal, point) or (normal != "/" and _under(point, normal)):
                return str(self.root) + normal
        return path

    def rewrite(self, value: str) -> str:
        """Rewrites each absolute path at the start of `value` or after `=` or `,` (flags, lists)."""
        return _PATH_TOKEN.sub(lambda m: m.group(1) + self.local(m.group(2)), value)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are substituted, $$ escapes, others stay."""
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, value)


# ---- the node --------------------------------------------------------------------------------------------
class Node:
    """Plays the kubelet for every pod not bound to a node that `plays` accepts (all, by default); see the
    module docstring."""

    def __init__(
        self,
        api_client: client.ApiClient,
        server: str,
        workdir: Path,
        images: dict[str, Image],
        claims: dict[str, Path] | None = None,
        faults: FaultPlan | None = None,
        plays: Callable[[dict], bool] | None = None,
    ):
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.http = _Http(api_client)
        self.server = server
        self.workdir = Path(workdir)
        self.images = dict(images)
        self.claims = dict(claims or {})
        self.faults = faults
        self.plays = plays or (lambda pod: True)
        self.records: list[PodRecord] = []
        self.errors: list[str] = []
        self._runs: dict[str, _PodRun] = {}
        self._played: set[str] = set()
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch_pods, name="test-node", daemon=True)

    # -- lifecycle --
    def start(self) -> Node:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops watching and kills every container still running."""
        self._stopped.set()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.terminate(grace=2.0)
        for run in runs:
            run.join(15)
        self._thread.join(10)

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- what tests look at and do --
    def pods(self, predicate: Callable[[PodRecord], bool] = lambda r: True) -> list[PodRecord]:
        with self._lock:
            return [r for r in self.records if predicate(r)]

    def running(self, predicate: Callable[[PodRecord], bool] = lambda r: True) -> list[PodRecord]:
        with self._lock:
            return [run.record for run in self._runs.values() if run.record.phase in ("Pending", "Running") and predicate(run.record)]

    def kill(self, record: PodRecord, container: str, sig: int = signal.SIGKILL) -> bool:
        """Sends `sig` to a running container's processes (a node-level failure); False if it is not running."""
        with self._lock:
            run = self._runs.get(record.uid)
        return run.signal_container(container, sig) if run else False

    def log(self, record: PodRecord, container: str) -> str:
        path = record.containers[container].log if container in record.containers else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    # -- watching --
    def _watch_pods(self) -> None:
        version = ""
        while not self._stopped.is_set():
            try:
                if not version:
                    listing = self.http.request("GET", "/api/v1/pods")
                    version = listing["metadata"]["resourceVersion"]
                    for pod in listing["items"]:
                        self._on_pod("ADDED", pod)
                query = [("watch", "true"), ("resourceVersion", version), ("allowWatchBookmarks", "true"),
                         ("timeoutSeconds", "5")]
                for kind, pod in self.http.watch("/api/v1/pods", query):
                    version = pod.get("metadata", {}).get("resourceVersion", version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._on_pod(kind, pod)
                    if self._stopped.is_set():
                        break
            except client.ApiException as error:
                if error.status == 410:
                    version = ""
                    continue
                if not self._stopped.is_set():
                    self._error(f"watching pods: {error.status} {error.reason}: {error.body}")
                    version = ""
                    time.sleep(0.5)
            except Exception as error:  # noqa: BLE001 - the node keeps watching; tests see self.errors
                if not self._stopped.is_set():
                    self._error(f"watching pods: {type(error).__name__}: {error}")
                    version = ""
                    time.sleep(0.5)

    def _on_pod(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            run = self._runs.get(uid)
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            if run is not None:
                run.terminate(grace=float(pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)),
                              gone=kind == "DELETED")
            return
        phase = (pod.get("status") or {}).get("phase")
        if run is not None or uid in self._played or phase in ("Succeeded", "Failed") or pod["spec"].get("nodeName") \
                or not self.plays(pod):
            return  # a pod is played once: late events of a pod already played must not start it again
        owner = next(((o["kind"], o["name"]) for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
        key = (meta["namespace"], *(owner or ("Pod", meta["name"])))
        with self._lock:
            if self._stopped.is_set() or uid in self._runs or uid in self._played:
                return
            self._played.add(uid)
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            record = PodRecord(meta["namespace"], meta["name"], uid, dict(meta.get("labels") or {}), owner, attempt, pod["spec"])
            self.records.append(record)
            run = _PodRun(self, pod, record)
            self._runs[uid] = run
        run.start()

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)


class _MountFailed(RuntimeError):
    """A volume cannot be set up (yet): the pod stays Pending, as with the kubelet's FailedMount."""


class _Unschedulable(_MountFailed):
    """A claim the node does not have: the scheduler would not place the pod anywhere."""


class _Http:
    """Plain JSON requests and watches through the kubernetes client's transport and credentials."""

    def __init__(self, api_client: client.ApiClient):
        self.api_client = api_client

    def _call(self, method: str, path: str, query: list[tuple[str, str]] | None, body: Any, content_type: str,
              timeout: float) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(method=method, resource_path=path, query_params=list(query or []),
                                                  header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api_client.call_api(*request, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            raise client.ApiException(status=response.status, reason=response.reason, body=response.read())
        return response

    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None,
                content_type: str = "application/json") -> dict:
        data = self._call(method, path, query, body, content_type, 30).read()
        return json.loads(data) if data else {}

    def watch(self, path: str, query: list[tuple[str, str]]) -> Iterable[tuple[str, dict]]:
        response = self._call("GET", path, query, None, "", 30).response
        try:
            buffer = b""
            for chunk in response.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        raise client.ApiException(status=int(status.get("code", 500)), reason=status.get("reason"),
                                                  body=json.dumps(status))
                    yield event["type"], event["object"]
        finally:
            response.close()


# ---- one pod --------------------------------------------------------------------------------------------
@dataclass
class _Proc:
    """A container's process. Only `_wait` reaps it (wait4, for its CPU time); others look at `done`."""

    popen: subprocess.Popen
    started_at: str
    log: Path
    done: threading.Event = field(default_factory=threading.Event)

    def signal(self, sig: int) -> None:
        if not self.done.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)


class _PodRun(threading.Thread):
    def __init__(self, node: Node, pod: dict, record: PodRecord):
        super().__init__(daemon=True, name=f"pod-{record.namespace}-{record.name}")
        self.node, self.pod, self.record = node, pod, record
        self.spec = pod["spec"]
        self.dir = node.workdir / "pods" / record.namespace / f"{record.name}-{record.uid[:8]}"
        self.volumes: dict[str, Path] = {}
        self.token_volumes: set[str] = set()
        self.procs: dict[str, _Proc] = {}
        self.statuses: dict[str, dict] = {}  # container name → containerStatus
        self.conditions: dict[str, dict] = {}
        self.start_time = _now()
        self.terminating = threading.Event()
        self.gone = False
        self.grace = float(self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        self._lock = threading.Lock()
        self._report_lock = threading.RLock()
        self._reported: dict[str, Any] | None = None

    # -- entry --
    def run(self) -> None:
        try:
            self._run_pod()
        except Exception as error:  # noqa: BLE001 - the node reports it; the test decides
            self.node._error(f"pod {self.record.namespace}/{self.record.name}: {type(error).__name__}: {error}")
            self._stop_all(grace=1.0)
        finally:
            with self.node._lock:
                self.node._runs.pop(self.record.uid, None)

    def _run_pod(self) -> None:
        init = self.spec.get("initContainers") or []
        main = self.spec.get("containers") or []
        for c in init:
            self.statuses[c["name"]] = self._waiting_status(c, "PodInitializing")
        for c in main:
            self.statuses[c["name"]] = self._waiting_status(c, "PodInitializing" if init else "ContainerCreating")
        self._condition("PodReadyToStartContainers", False)
        self._condition("Initialized", not init)
        self._condition("Ready", False, "ContainersNotReady")
        self._condition("ContainersReady", False, "ContainersNotReady")
        self._report("Pending")
        if not self._setup_volumes():
            return
        self._condition("PodReadyToStartContainers", True)
        self._report("Pending")

        sidecars: list[dict] = []
        for container in init:
            if self.terminating.is_set():
                return self._finish_terminated()
            if container.get("restartPolicy") == "Always":
                if not self._start_sidecar(container):
                    return self._finish_terminated() if self.terminating.is_set() else self._fail_pod()
                sidecars.append(container)
                continue
            code = self._run_to_end(container)
            if code is None:  # never started, until the pod was deleted
                return self._finish_terminated()
            if code != 0:
                if self.spec.get("restartPolicy") == "OnFailure" and not self.terminating.is_set():
                    while code not in (None, 0) and not self.terminating.is_set():
                        self.statuses[container["name"]]["restartCount"] += 1
                        code = self._run_to_end(container)
                    if code != 0:
                        return self._finish_terminated()
                else:
                    self._stop_sidecars(sidecars)
                    return self._fail_pod()
        self._condition("Initialized", True)
        for c in main:
            self.statuses[c["name"]] = self._waiting_status(c, "ContainerCreating")
        self._report("Pending")

        threads = [threading.Thread(target=self._main_container, args=(c,), daemon=True) for c in main]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._stop_sidecars(sidecars)
        codes = [self._exit_code(c["name"]) for c in main]
        if any(code is None for code in codes):  # a container never started and the pod was deleted
            return self._finish_terminated()
        phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        if self.terminating.is_set() and phase == "Succeeded" and any(
                self.statuses[c["name"]]["state"].get("terminated", {}).get("reason") != "Completed" for c in main):
            phase = "Failed"
        self._ready(False, completed=True)
        self._report(phase)

    # -- volumes --
    def _setup_volumes(self) -> bool:
        """Retries until the volumes can be set up or the pod is deleted, as the scheduler and kubelet do."""
        while True:
            try:
                for volume in self.spec.get("volumes") or []:
                    if volume["name"] not in self.volumes:
                        self.volumes[volume["name"]] = self._materialise(volume)
                return True
            except _Unschedulable as failure:
                # What the scheduler reports; the pod never reaches a node, so no container status changes.
                self.conditions.clear()
                self._condition("PodScheduled", False, "Unschedulable", f"0/1 nodes are available: {failure}.")
                self.record.waiting_reason = f"Unschedulable: {failure}"
            except _MountFailed as failure:
                for status in self.statuses.values():
                    if "waiting" in status["state"]:
                        status["state"] = {"waiting": {"reason": "ContainerCreating", "message": str(failure)}}
                self.record.waiting_reason = f"FailedMount: {failure}"
            self._report("Pending")
            if self.terminating.wait(1.0):
                self._finish_terminated()
                return False

    def _materialise(self, volume: dict) -> Path:
        name = volume["name"]
        target = self.dir / "volumes" / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            return target
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in self.node.claims:
                raise _Unschedulable(f'persistentvolumeclaim "{claim}" not found')
            return Path(self.node.claims[claim])
        if "hostPath" in volume:
            return Path(volume["hostPath"]["path"])
        if "configMap" in volume or "secret" in volume:
            files = self._object_files(volume)
            self._write_files(target, files)
            return target
        if "downwardAPI" in volume:
            self._write_files(target, {i["path"]: self._downward(i) for i in volume["downwardAPI"].get("items") or []})
            return target
        if "projected" in volume:
            files: dict[str, str | bytes] = {}
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    token = source["serviceAccountToken"]
                    files[token["path"]] = self._token(token)
                    self.token_volumes.add(name)
                elif "configMap" in source or "secret" in source:
                    files.update(self._object_files(source))
                elif "downwardAPI" in source:
                    files.update({i["path"]: self._downward(i) for i in source["downwardAPI"].get("items") or []})
            self._write_files(target, files)
            return target
        raise _MountFailed(f"volume {name}: this node supports emptyDir, configMap, secret, downwardAPI, projected, "
                           f"persistentVolumeClaim and hostPath, not {sorted(set(volume) - {'name'})}")

    def _object_files(self, source: dict) -> dict[str, str | bytes]:
        kind = "configMap" if "configMap" in source else "secret"
        ref = source[kind]
        name = ref.get("name") or ref.get("secretName")
        try:
            if kind == "configMap":
                obj = self.node.core.read_namespaced_config_map(name, self.record.namespace)
                data: dict[str, str | bytes] = dict(obj.data or {})
                data.update({k: base64.b64decode(v) for k, v in (obj.binary_data or {}).items()})
            else:
                obj = self.node.core.read_namespaced_secret(name, self.record.namespace)
                data = {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
        except client.ApiException as error:
            if error.status == 404 and ref.get("optional"):
                return {}
            if error.status == 404:
                raise _MountFailed(f'{kind} "{name}" not found') from None
            raise
        items = ref.get("items")
        if not items:
            return data
        out = {}
        for item in items:
            if item["key"] not in data:
                if ref.get("optional"):
                    continue
                raise _MountFailed(f'{kind} "{name}" has no key "{item["key"]}"')
            out[item["path"]] = data[item["key"]]
        return out

    def _downward(self, item: dict) -> str:
        if "fieldRef" in item:
            return self._field(item["fieldRef"]["fieldPath"])
        raise _MountFailed(f"downwardAPI item {item.get('path')}: only fieldRef is supported")

    def _field(self, path: str) -> str:
        meta = self.pod["metadata"]
        match = re.fullmatch(r"metadata\.(labels|annotations)(?:\['([^']+)'\])?", path)
        if match:
            values = meta.get(match.group(1)) or {}
            if match.group(2) is not None:
                return values.get(match.group(2), "")
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        simple = {
            "metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
            "spec.serviceAccountName": self.spec.get("serviceAccountName", ""), "spec.nodeName": "",
            "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
        }
        if path not in simple:
            raise _MountFailed(f"fieldRef {path} is not supported by the test node")
        return simple[path]

    def _token(self, source: dict) -> str:
        """A token bound to this pod, as the kubelet requests it for a projected serviceAccountToken."""
        spec = client.V1TokenRequestSpec(
            audiences=[source["audience"]] if source.get("audience") else [],
            expiration_seconds=int(source.get("expirationSeconds", 3600)),
            bound_object_ref=client.V1BoundObjectReference(api_version="v1", kind="Pod", name=self.record.name, uid=self.record.uid),
        )
        account = self.spec.get("serviceAccountName") or "default"
        response = self.node.core.create_namespaced_service_account_token(
            account, self.record.namespace, client.AuthenticationV1TokenRequest(spec=spec))
        return response.status.token

    @staticmethod
    def _write_files(target: Path, files: dict[str, str | bytes]) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for relative, content in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    # -- one container --
    def _prepare(self, container: dict) -> tuple[list[str], dict[str, str], str, Path, ContainerRecord] | str:
        """argv, env, cwd, termination-message file and record — or why the container cannot be created."""
        name = container["name"]
        image = self._image(container["image"])
        if image is None:
            return "ErrImagePull"
        root = self.dir / "root" / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        mounts = list(container.get("volumeMounts") or [])
        points = []
        credentials = False
        for mount in sorted(mounts, key=lambda m: m["mountPath"].count("/")):
            source = self.volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            link = Path(str(root) + os.path.normpath(mount["mountPath"]))
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                raise RuntimeError(f"container {name}: mount {mount['mountPath']} is nested in another mount; the test node does not support that")
            link.symlink_to(source)
            points.append(mount["mountPath"])
            credentials = credentials or (mount["name"] in self.token_volumes and not mount.get("subPath"))
        termination_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        termination = Path(str(root) + os.path.normpath(termination_path))
        termination.parent.mkdir(parents=True, exist_ok=True)
        termination.write_text("")
        points.append(termination_path)
        paths = PathMap(root, points)

        # The image's own environment names the node's files (its PATH may well lie under /tmp, which a pod
        # mounts over): only what the pod spec sets is rewritten into the container's root.
        image_env = {"PATH": ":".join([*map(str, image.path), BASE_PATH]), "HOSTNAME": self.record.name, **dict(image.env)}
        env = dict(image_env)
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            ref = source.get("configMapRef") or source.get("secretRef")
            kind = "configMap" if "configMapRef" in source else "secret"
            for key, value in self._object_files({kind: ref}).items():
                env[prefix + key] = value.decode() if isinstance(value, bytes) else value
        for entry in container.get("env") or []:
            env[entry["name"]] = self._env_value(entry, env, container)
        env = {k: v if image_env.get(k) == v else paths.rewrite(v) for k, v in env.items()}
        if credentials:
            env["KUBECONFIG"] = str(self._kubeconfig(container, mounts))

        command = list(container.get("command") or image.entrypoint)
        args = list(container.get("args") or ([] if container.get("command") else []))
        argv = [paths.rewrite(_expand(part, env)) for part in command + args]
        if not argv:
            return "RunContainerError"
        executable = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env["PATH"])
        if executable is None or not os.access(executable, os.X_OK):
            return f"StartError: exec: {argv[0]!r}: no such executable file in the container (or not in $PATH)"
        argv[0] = executable
        cwd = paths.local(container.get("workingDir") or "/")
        if cwd == "/":
            cwd = str(root)
        Path(cwd).mkdir(parents=True, exist_ok=True)
        record = self.record.containers.setdefault(name, ContainerRecord(name))
        record.argv, record.env, record.cwd, record.credentials = argv, env, cwd, credentials
        return argv, env, cwd, termination, record

    def _env_value(self, entry: dict, env: dict[str, str], container: dict) -> str:
        if "value" in entry:
            return _expand(entry["value"], env)
        source = entry.get("valueFrom") or {}
        if "fieldRef" in source:
            return self._field(source["fieldRef"]["fieldPath"])
        if "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "configMap" if "configMapKeyRef" in source else "secret"
            ref = source[f"{kind}KeyRef"]
            value = self._object_files({kind: {"name": ref["name"], "optional": ref.get("optional")}}).get(ref["key"], "")
            return value.decode() if isinstance(value, bytes) else value
        if "resourceFieldRef" in source:
            resource = source["resourceFieldRef"]["resource"]
            group, _, what = resource.partition(".")
            return str(((container.get("resources") or {}).get(group) or {}).get(what, ""))
        return ""

    def _kubeconfig(self, container: dict, mounts: list[dict]) -> Path:
        """In-cluster config as a kubeconfig: the mounted token and CA, the API server's address."""
        volume = next(self.volumes[m["name"]] for m in mounts if m["name"] in self.token_volumes)
        ca = (volume / "ca.crt").read_bytes()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
            "clusters": [{"name": "in-cluster", "cluster": {"server": self.node.server,
                                                            "certificate-authority-data": base64.b64encode(ca).decode()}}],
            "users": [{"name": "in-cluster", "user": {"tokenFile": str(volume / "token")}}],
            "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "in-cluster",
                                                             "namespace": self.record.namespace}}],
        }
        path = self.dir / f"kubeconfig-{container['name']}"
        path.write_text(yaml.safe_dump(config))
        return path

    def _image(self, reference: str) -> Image | None:
        images = self.node.images
        return images.get(reference) or images.get(image_repository(reference))

    def _spawn(self, container: dict) -> tuple[_Proc, Path, ContainerRecord] | None:
        """Starts a container; None when it could not be (its status then says why)."""
        name = container["name"]
        prepared = self._prepare(container)
        if isinstance(prepared, str):
            self._cannot_start(container, prepared)
            return None
        argv, env, cwd, termination, record = prepared
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        record.log = log
        try:
            with log.open("ab") as handle:
                popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=handle,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as error:
            self._cannot_start(container, f"StartError: {error}")
            return None
        proc = _Proc(popen, _now(), log)
        with self._lock:
            self.procs[name] = proc
        status = self.statuses[name]
        status.update({"state": {"running": {"startedAt": proc.started_at}}, "started": True,
                       "containerID": f"harness://{popen.pid}"})
        fault = self.node.faults(self.pod, name, self.record.attempt) if self.node.faults else None
        if fault is not None:
            threading.Thread(target=self._inject, args=(name, proc, fault), daemon=True).start()
        return proc, termination, record

    def _inject(self, name: str, proc: _Proc, fault: Fault) -> None:
        time.sleep(fault.after_seconds)
        if not proc.done.is_set():
            self.statuses[name]["_fault_reason"] = fault.reason
            proc.signal(fault.signal)

    def _cannot_start(self, container: dict, why: str) -> None:
        """Image missing: waits forever (ErrImagePull → ImagePullBackOff). Start errors: terminated, 128."""
        name = container["name"]
        status = self.statuses[name]
        if why == "ErrImagePull":
            message = f'Failed to pull image "{container["image"]}": not present on the test node'
            status["state"] = {"waiting": {"reason": "ErrImagePull", "message": message}}
            self.record.waiting_reason = "ErrImagePull"
            self._report(self._current_phase())
            if not self.terminating.wait(2.0):
                status["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{container["image"]}"'}}
                self.record.waiting_reason = "ImagePullBackOff"
                self._report(self._current_phase())
            self.terminating.wait()
            return
        stamp = _now()
        status["state"] = {"terminated": {"exitCode": 128, "reason": "StartError", "message": why,
                                          "startedAt": stamp, "finishedAt": stamp}}
        record = self.record.containers.setdefault(name, ContainerRecord(name))
        record.exit_code, record.reason, record.message = 128, "StartError", why

    def _wait(self, name: str, proc: _Proc, termination: Path, record: ContainerRecord, container: dict) -> int:
        _pid, wait_status, usage = os.wait4(proc.popen.pid, 0)
        code = os.waitstatus_to_exitcode(wait_status)
        proc.popen.returncode = code
        proc.done.set()
        record.cpu_seconds += usage.ru_utime + usage.ru_stime
        exit_code = code if code >= 0 else 128 - code
        status = self.statuses[name]
        fault_reason = status.pop("_fault_reason", None)
        reason = "Completed" if exit_code == 0 else (fault_reason or "Error")
        message = termination.read_bytes()[:MESSAGE_LIMIT].decode(errors="replace") if termination.exists() else ""
        if not message and exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = proc.log.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LINES:]
            message = "\n".join(lines)[-FALLBACK_BYTES:]
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": proc.started_at, "finishedAt": _now()}
        if code < 0:
            terminated["signal"] = -code
        if message:
            terminated["message"] = message
        status.update({"state": {"terminated": terminated}, "ready": False, "started": False})
        record.exit_code, record.reason, record.message = exit_code, reason, message
        with self._lock:
            self.procs.pop(name, None)
        return exit_code

    def _run_to_end(self, container: dict) -> int | None:
        spawned = self._spawn(container)
        if spawned is None:
            return self._exit_code(container["name"])
        proc, termination, record = spawned
        self._report(self._current_phase())
        code = self._wait(container["name"], proc, termination, record, container)
        self._report(self._current_phase())
        return code

    def _main_container(self, container: dict) -> None:
        """Runs a main container; restarts it in place as its pod's restartPolicy says."""
        policy = self.spec.get("restartPolicy", "Always")
        while True:
            code = self._run_to_end(container)
            if code is None or self.terminating.is_set() or policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            status = self.statuses[container["name"]]
            status["lastState"] = status["state"]
            status["restartCount"] += 1
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                           "message": f"back-off {RESTART_BACKOFF_SECONDS:g}s restarting failed container"}}
            self.record.containers[container["name"]].restarts += 1
            self._report(self._current_phase())
            if self.terminating.wait(RESTART_BACKOFF_SECONDS):
                return

    # -- sidecars --
    def _start_sidecar(self, container: dict) -> bool:
        """Starts a native sidecar and waits for its startupProbe; it is restarted whenever it exits."""
        spawned = self._spawn(container)
        if spawned is None:
            return False
        threading.Thread(target=self._keep_sidecar, args=(container, spawned), daemon=True).start()
        self._report("Pending")
        probe = container.get("startupProbe")
        if probe is not None and not self._probe(container, probe):
            return False
        self.statuses[container["name"]]["ready"] = True
        self._report("Pending")
        return True

    def _keep_sidecar(self, container: dict, spawned: tuple[_Proc, Path, ContainerRecord]) -> None:
        name = container["name"]
        while True:
            proc, termination, record = spawned
            self._wait(name, proc, termination, record, container)
            if self.terminating.is_set() or self.statuses[name].get("_stopping"):
                return
            status = self.statuses[name]
            status["lastState"] = status["state"]
            status["restartCount"] += 1
            record.restarts += 1
            if self.terminating.wait(1.0):
                return
            again = self._spawn(container)
            if again is None:
                return
            spawned = again
            self._report(self._current_phase())

    def _probe(self, container: dict, probe: dict) -> bool:
        period = float(probe.get("periodSeconds", 10))
        deadline = time.monotonic() + float(probe.get("initialDelaySeconds", 0)) + period * int(probe.get("failureThreshold", 3))
        while time.monotonic() < deadline:
            if self.terminating.is_set():
                return False
            if self._probe_once(container, probe):
                return True
            time.sleep(min(period, 0.5))
        return False

    def _probe_once(self, container: dict, probe: dict) -> bool:
        def port_of(value: Any) -> int:
            if isinstance(value, int) or str(value).isdigit():
                return int(value)
            return next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == value)

        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                url = f"http://127.0.0.1:{port_of(get['port'])}{get.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=float(probe.get("timeoutSeconds", 1))) as response:
                    return 200 <= response.status < 400
            if "tcpSocket" in probe:
                import socket

                with socket.create_connection(("127.0.0.1", port_of(probe["tcpSocket"]["port"])), timeout=1):
                    return True
            if "exec" in probe:
                return subprocess.run(probe["exec"]["command"], capture_output=True, timeout=10).returncode == 0
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired, StopIteration):
            return False
        return False

    def _stop_sidecars(self, sidecars: list[dict]) -> None:
        for container in reversed(sidecars):
            name = container["name"]
            self.statuses[name]["_stopping"] = True
            with self._lock:
                proc = self.procs.get(name)
            if proc is not None:
                self._stop_process(proc, self.grace)
        deadline = time.monotonic() + 10
        while any(c["name"] in self.procs for c in sidecars) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- stopping --
    def signal_container(self, name: str, sig: int) -> bool:
        with self._lock:
            proc = self.procs.get(name)
        if proc is None or proc.done.is_set():
            return False
        proc.signal(sig)
        return True

    def terminate(self, grace: float, gone: bool = False) -> None:
        """The pod is being deleted: stop every container (SIGTERM, then SIGKILL after the grace period)."""
        self.gone = self.gone or gone
        if self.terminating.is_set():
            return
        self.terminating.set()
        threading.Thread(target=self._stop_all, args=(grace,), daemon=True).start()

    def _stop_all(self, grace: float) -> None:
        with self._lock:
            procs = list(self.procs.values())
        for proc in procs:
            self._stop_process(proc, grace)

    @staticmethod
    def _stop_process(proc: _Proc, grace: float) -> None:
        proc.signal(signal.SIGTERM)
        if not proc.done.wait(grace):
            proc.signal(signal.SIGKILL)
            proc.done.wait(10)

    # -- status --
    def _waiting_status(self, container: dict, reason: str) -> dict:
        return {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                "restartCount": 0, "started": False, "state": {"waiting": {"reason": reason}}}

    def _exit_code(self, name: str) -> int | None:
        return (self.statuses[name]["state"].get("terminated") or {}).get("exitCode")

    def _current_phase(self) -> str:
        main = self.spec.get("containers") or []
        if any("running" in self.statuses[c["name"]]["state"] for c in main):
            return "Running"
        restarting = any(self.statuses[c["name"]]["restartCount"] for c in main)
        return "Running" if restarting and self.spec.get("restartPolicy", "Always") != "Never" else "Pending"

    def _condition(self, type_: str, status: bool, reason: str | None = None, message: str | None = None) -> None:
        previous = self.conditions.get(type_)
        text = "True" if status else "False"
        moved = previous is None or previous["status"] != text
        condition = {"type": type_, "status": text, "lastProbeTime": None,
                     "lastTransitionTime": _now() if moved else previous["lastTransitionTime"]}
        if reason and not status:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        self.conditions[type_] = condition

    def _ready(self, ready: bool, completed: bool = False) -> None:
        reason = "PodCompleted" if completed else "ContainersNotReady"
        self._condition("ContainersReady", ready, reason)
        self._condition("Ready", ready, reason)

    def _fail_pod(self) -> None:
        self._ready(False, completed=True)
        self._report("Failed")

    def _finish_terminated(self) -> None:
        """A deleted pod's last status: Failed, as the kubelet reports a pod it killed."""
        main = self.spec.get("containers") or []
        for c in main:
            status = self.statuses[c["name"]]
            if "terminated" not in status["state"]:
                stamp = _now()
                status["state"] = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                                  "message": "The container could not be located when the pod was terminated",
                                                  "startedAt": stamp, "finishedAt": stamp}}
        self._report("Failed")

    def _report(self, phase: str) -> None:
        """Writes the pod's status; serialised, so a slower writer never sends an older state last."""
        with self._report_lock:
            self._write_status(phase)

    def _write_status(self, phase: str) -> None:
        if phase == "Running":
            main = self.spec.get("containers") or []
            ready = all(self.statuses[c["name"]]["state"].get("running") for c in main)
            self._ready(ready)
            for c in main:
                self.statuses[c["name"]]["ready"] = "running" in self.statuses[c["name"]]["state"]
        self.record.phase = phase
        init = [c["name"] for c in self.spec.get("initContainers") or []]
        main = [c["name"] for c in self.spec.get("containers") or []]

        def public(name: str) -> dict:
            return {k: v for k, v in self.statuses[name].items() if not k.startswith("_")}

        status: dict[str, Any] = {
            "phase": phase,
            "conditions": list(self.conditions.values()),
            "startTime": self.start_time,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",  # every pod shares the host's network here
            "podIPs": [{"ip": "127.0.0.1"}],
            "containerStatuses": [public(n) for n in main],
        }
        if init:
            status["initContainerStatuses"] = [public(n) for n in init]
        if self.gone or status == self._reported:
            return  # the kubelet writes only what changed
        self._reported = copy.deepcopy(status)
        try:
            self.node.http.request("PATCH", f"/api/v1/namespaces/{self.record.namespace}/pods/{self.record.name}/status",
                                   body={"status": status}, content_type="application/merge-patch+json")
        except client.ApiException as error:
            if error.status == 404:
                self.gone = True
                return
            raise


def dump(records: Iterable[PodRecord]) -> str:
    """What the node ran, for assertion messages."""
    rows = []
    for r in records:
        containers = {n: (c.exit_code, c.reason, (c.message or "")[-200:]) for n, c in r.containers.items()}
        rows.append({"pod": f"{r.namespace}/{r.name}", "phase": r.phase, "attempt": r.attempt,
                     "waiting": r.waiting_reason, "containers": containers})
    return json.dumps(rows, indent=1, default=str)
