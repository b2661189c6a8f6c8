"""A real Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager.

Binaries come from `hack/controlplane/build.sh`. Everything listens on 127.0.0.1 at free ports and lives
in one temporary directory (certificates, etcd data, kubeconfigs, one log file per process), removed by
`stop()`. There is no scheduler and no kubelet: pods stay Pending until a test plays the node.

    cp = ControlPlane.start(bin_dir)
    api = kubernetes.client.CoreV1Api(cp.api_client())
    ...
    cp.stop()
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"  # first address of the range: the `kubernetes` Service
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or did not become ready."""


# --- processes ------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test process is killed outright, the kernel
    # sends SIGKILL to the component too, so no etcd or apiserver outlives a crashed test session.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @classmethod
    def spawn(cls, name: str, argv: list[str], workdir: Path) -> _Process:
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,  # own process group: stop() signals it as a whole
                preexec_fn=_die_with_parent if os.uname().sysname == "Linux" else None,
            )
        return cls(name, popen, log_path)

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def describe_failure(self, what: str) -> str:
        state = "running" if self.running() else f"exited with code {self.popen.returncode}"
        return (
            f"{what}\n{self.name} is {state}; last {LOG_TAIL_LINES} lines of {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def stop(self, grace_seconds: float = 10.0) -> None:
        if not self.running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=grace_seconds)


def _wait_until(check, *, timeout: float, process: _Process, what: str, interval: float = 0.2):
    """Polls `check()` until it returns a truthy value; fails early if `process` dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not process.running():
            raise ControlPlaneError(process.describe_failure(f"{process.name} exited while waiting for {what}"))
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 - the last error goes into the report
            last_error = error
            result = None
        if result:
            return result
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise ControlPlaneError(process.describe_failure(f"timed out after {timeout:.0f}s waiting for {what}{detail}"))


# --- certificates ---------------------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    subject: x509.Name,
    key,
    *,
    issuer: x509.Name | None = None,
    issuer_key=None,
    ca: bool = False,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = []
        if server_names or server_ips:
            usages.append(x509.ExtendedKeyUsageOID.SERVER_AUTH)
            sans = [x509.DNSName(n) for n in server_names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if client:
            usages.append(x509.ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _name(common_name: str, *organizations: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class _Pki:
    """Paths of the PEM files the components are started with."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    controller_manager_cert: Path
    controller_manager_key: Path
    service_account_key: Path
    service_account_pub: Path

    @classmethod
    def generate(cls, directory: Path) -> _Pki:
        directory.mkdir(mode=0o700)

        def write(name: str, data: bytes) -> Path:
            path = directory / name
            path.write_bytes(data)
            path.chmod(0o600)
            return path

        ca_key = _new_key()
        ca_name = _name("evomerge-test-ca")
        ca_cert = _issue(ca_name, ca_key, ca=True)

        def leaf(stem: str, subject: x509.Name, **usage) -> tuple[Path, Path]:
            key = _new_key()
            cert = _issue(subject, key, issuer=ca_name, issuer_key=ca_key, **usage)
            return write(f"{stem}.crt", _pem_cert(cert)), write(f"{stem}.key", _pem_key(key))

        serving = leaf(
            "apiserver",
            _name("kube-apiserver"),
            server_names=(
                "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server_ips=("127.0.0.1", KUBERNETES_SERVICE_IP),
        )
        # O=system:masters is the group the apiserver lets past RBAC: the test's superuser.
        admin = leaf("admin", _name("evomerge-test-admin", "system:masters"), client=True)
        # The identity kubeadm gives the controller manager; bootstrap RBAC roles exist for it.
        controller_manager = leaf(
            "controller-manager", _name("system:kube-controller-manager"), client=True
        )
        sa_key = _new_key()
        sa_pub = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(
            ca_cert=write("ca.crt", _pem_cert(ca_cert)),
            ca_key=write("ca.key", _pem_key(ca_key)),
            serving_cert=serving[0],
            serving_key=serving[1],
            admin_cert=admin[0],
            admin_key=admin[1],
            controller_manager_cert=controller_manager[0],
            controller_manager_key=controller_manager[1],
            service_account_key=write("sa.key", _pem_key(sa_key)),
            service_account_pub=write("sa.pub", sa_pub),
        )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, user: dict, name: str = "evomerge-test") -> Path:
    """Writes a self-contained kubeconfig (certificates inlined) with one cluster, user and context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _client_cert_user(cert: Path, key: Path) -> dict:
    return {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}


# --- the control plane ----------------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager; see the module docstring."""

    bin_dir: Path
    workdir: Path
    server: str
    kubeconfig: Path
    pki: _Pki
    processes: list[_Process] = field(default_factory=list)
    keep_workdir: bool = False
    etcd_url: str = ""

    @classmethod
    def start(
        cls, bin_dir: str | Path, *, workdir: str | Path | None = None, timeout: float = 120.0,
        keep_workdir: bool = False,
    ) -> ControlPlane:
        """Starts the three components and returns once the apiserver is ready and the controller
        manager has done its first visible work. On any failure everything started is torn down and a
        `ControlPlaneError` carrying the failing component's log tail is raised."""
        bin_dir = Path(bin_dir)
        for binary in ("etcd", "kube-apiserver", "kube-controller-manager"):
            if not os.access(bin_dir / binary, os.X_OK):
                raise ControlPlaneError(f"{bin_dir / binary} is missing; run hack/controlplane/build.sh")
        workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="evomerge-controlplane-"))
        pki = _Pki.generate(workdir / "pki")
        port = free_port()
        server = f"https://127.0.0.1:{port}"
        kubeconfig = write_kubeconfig(
            workdir / "admin.kubeconfig", server=server, ca_cert=pki.ca_cert,
            user=_client_cert_user(pki.admin_cert, pki.admin_key),
        )
        plane = cls(bin_dir, workdir, server, kubeconfig, pki, keep_workdir=keep_workdir)
        atexit.register(plane.stop)
        try:
            plane._start_etcd(timeout)
            plane._start_apiserver(port, timeout)
            plane._start_controller_manager(timeout)
        except BaseException:
            plane.stop()
            raise
        return plane

    # -- components --

    def _start_etcd(self, timeout: float) -> None:
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        data_dir = self.workdir / "etcd"
        data_dir.mkdir(mode=0o700)
        etcd = _Process.spawn("etcd", [
            str(self.bin_dir / "etcd"),
            "--name=evomerge-test",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=evomerge-test={peer_url}",
            "--unsafe-no-fsync=true",  # throwaway data: durability costs only time here
            "--log-level=warn",
        ], self.workdir)
        self.processes.append(etcd)
        self.etcd_url = client_url

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client_url}/health", timeout=2) as response:
                return b'"health":"true"' in response.read()

        _wait_until(healthy, timeout=timeout, process=etcd, what=f"etcd at {client_url}/health")

    def _start_apiserver(self, port: int, timeout: float) -> None:
        pki = self.pki
        apiserver = _Process.spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The lease reconciler refuses a loopback address for the `kubernetes` Service endpoints;
            # nothing in-cluster talks to the apiserver here, so that Service needs none.
            "--endpoint-reconciler-type=none",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--profiling=false",
        ], self.workdir)
        self.processes.append(apiserver)
        context = self._ssl_context()

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=5, context=context) as response:
                return response.status == 200

        _wait_until(ready, timeout=timeout, process=apiserver, what=f"{self.server}/readyz")

    def _start_controller_manager(self, timeout: float) -> None:
        pki = self.pki
        kubeconfig = write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig", server=self.server, ca_cert=pki.ca_cert,
            user=_client_cert_user(pki.controller_manager_cert, pki.controller_manager_key),
        )
        controller_manager = _Process.spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'controller-manager-certs'}",
            "--leader-elect=false",
            # Every controller (job, garbage collector, namespace, serviceaccount, ...) runs under its
            # own ServiceAccount with its bootstrap role, as in kubeadm clusters.
            "--use-service-account-credentials=true",
            "--controllers=*",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--profiling=false",
        ], self.workdir)
        self.processes.append(controller_manager)

        # The serviceaccount and root-ca-cert-publisher controllers fill every namespace; seeing both
        # in `default` proves the controller manager is connected, authorised and running controllers.
        from kubernetes import client

        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)

            def working() -> bool:
                core.read_namespaced_service_account("default", "default")
                core.read_namespaced_config_map("kube-root-ca.crt", "default")
                return True

            _wait_until(working, timeout=timeout, process=controller_manager,
                        what="kube-controller-manager to create ServiceAccount and kube-root-ca.crt in 'default'",
                        interval=0.5)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    # -- use --

    def api_client(self):
        """A new `kubernetes.client.ApiClient` authenticated as the cluster admin (system:masters)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, path: str | Path | None = None, expiration_seconds: int = 3600,
    ) -> Path:
        """Writes a kubeconfig that authenticates as ServiceAccount `namespace/name` (which must exist)
        with a bound token from the TokenRequest API, so RBAC applies to it as to a pod's token."""
        from kubernetes import client

        with self.api_client() as api_client:
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
            )
            token = client.CoreV1Api(api_client).create_namespaced_service_account_token(
                name, namespace, request
            ).status.token
        path = Path(path) if path else self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(path, server=self.server, ca_cert=self.pki.ca_cert, user={"token": token})

    def stop(self) -> None:
        """Stops the components (newest first) and removes the working directory. Idempotent."""
        while self.processes:
            self.processes.pop().stop()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
