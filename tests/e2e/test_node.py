"""The test node plays the kubelet faithfully enough for the operator to be tested on it: volumes and paths,
init containers, native sidecars, termination messages, credentials, and the Job controller reacting to it."""

from __future__ import annotations

import socket
import sys
import textwrap

from evomerge.k8s.client import Kube

from .conftest import PYTHON_IMAGE
from .helpers import eventually


def python(name: str, code: str, *args: str, **extra) -> dict:
    """A container running `code` with `args` (paths in args are mapped into the container's root)."""
    return {"name": name, "image": PYTHON_IMAGE, "command": [sys.executable, "-c", textwrap.dedent(code), *args], **extra}


def job(name: str, namespace: str, pod: dict, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
            "spec": {"backoffLimit": 0, **spec, "template": {"spec": {"restartPolicy": "Never", **pod}}}}


def finished_job(kube: Kube, namespace: str, name: str, timeout: float = 120) -> dict:
    def done():
        current = kube.get("Job", namespace, name) or {}
        conditions = (current.get("status") or {}).get("conditions") or []
        return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions) and current

    return eventually(done, f"Job {name} to finish", timeout)


def pods_of(kube: Kube, namespace: str, name: str) -> list[dict]:
    pods = kube.list("Pod", namespace, f"batch.kubernetes.io/job-name={name}")
    return sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])


def job_condition(current: dict) -> tuple[str, str]:
    found = next(c for c in current["status"]["conditions"] if c["type"] in ("Complete", "Failed") and c["status"] == "True")
    return found["type"], found.get("reason", "")


def test_init_container_then_sidecar_then_main_with_volumes_env_and_termination_message(kube, node, namespace):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting", "namespace": namespace},
                 "data": {"greeting": "hello"}})
    pod = {
        "initContainers": [
            python("prepare", "import sys; open(sys.argv[1], 'w').write('init')", "/shared/ready",
                   volumeMounts=[{"name": "work", "mountPath": "/shared"}]),
            python("server", "import http.server, functools, sys\n"
                   "handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])\n"
                   "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), handler).serve_forever()",
                   str(port), "/shared", restartPolicy="Always",
                   startupProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 30},
                   ports=[{"name": "http", "containerPort": port}], volumeMounts=[{"name": "work", "mountPath": "/shared"}]),
        ],
        "containers": [python(
            "check",
            """
            import os, sys, urllib.request
            served = urllib.request.urlopen(sys.argv[1]).read().decode()
            greeting = open(sys.argv[3]).read()
            open(sys.argv[2], "w").write(" ".join([served, greeting, os.environ["WHO"], open(sys.argv[4]).read(), open("ready").read()]))
            """,
            f"http://127.0.0.1:{port}/ready", "/dev/termination-log", "/config/greeting", "/info/name",
            env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "WHO", "value": "pod=$(POD_NAME)"}],
            workingDir="/shared",
            volumeMounts=[{"name": "config", "mountPath": "/config", "readOnly": True}, {"name": "info", "mountPath": "/info"},
                          {"name": "work", "mountPath": "/shared"}],
        )],
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "config", "configMap": {"name": "greeting"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
    }
    kube.create(job("ordered", namespace, pod))

    current = finished_job(kube, namespace, "ordered")

    assert job_condition(current) == ("Complete", "CompletionsReached")
    (played,) = pods_of(kube, namespace, "ordered")
    name = played["metadata"]["name"]
    status = played["status"]
    assert status["phase"] == "Succeeded"
    (main,) = status["containerStatuses"]
    # served by the sidecar, mounted from the ConfigMap, expanded from the downward API, read in the workingDir
    assert main["state"]["terminated"]["message"].split(" ") == ["init", "hello", f"pod={name}", name, "init"]
    init = {s["name"]: s for s in status["initContainerStatuses"]}
    assert init["prepare"]["state"]["terminated"]["exitCode"] == 0
    sidecar = init["server"]["state"]["terminated"]
    # The sidecar started after the init container ended, and was stopped after the main container ended.
    assert init["prepare"]["state"]["terminated"]["finishedAt"] <= sidecar["startedAt"] <= main["state"]["terminated"]["startedAt"]
    assert sidecar["finishedAt"] >= main["state"]["terminated"]["finishedAt"] and sidecar["exitCode"] != 0
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready["Initialized"] == "True" and ready["Ready"] == "False"


def test_a_failing_container_reports_its_log_tail_and_the_job_retries_per_its_backoff_limit(kube, node, namespace):
    failing = python("fail", "print('loading'); print('boom: the scorer crashed', flush=True); raise SystemExit(3)",
                     terminationMessagePolicy="FallbackToLogsOnError")
    kube.create(job("retried", namespace, {"containers": [failing]}, backoffLimit=1))

    current = finished_job(kube, namespace, "retried")

    assert job_condition(current) == ("Failed", "BackoffLimitExceeded")
    pods = pods_of(kube, namespace, "retried")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    for pod in pods:
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
        assert terminated["message"].splitlines() == ["loading", "boom: the scorer crashed"]


def test_only_pods_that_mount_a_token_get_credentials_and_they_are_the_pods_own(kube, node, namespace):
    whoami = """
        import os, sys
        from kubernetes import client, config
        if "KUBECONFIG" not in os.environ:
            open(sys.argv[1], "w").write("no credentials")
        else:
            with config.new_client_from_config() as api:
                review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
            info = review.status.user_info
            open(sys.argv[1], "w").write(info.username + " " + ",".join(info.extra.get("authentication.kubernetes.io/pod-name", [])))
        """
    kube.create(job("with-token", namespace, {"containers": [python("who", whoami, "/dev/termination-log")]}))
    kube.create(job("without-token", namespace, {"automountServiceAccountToken": False,
                                                 "containers": [python("who", whoami, "/dev/termination-log")]}))

    with_token, without_token = finished_job(kube, namespace, "with-token"), finished_job(kube, namespace, "without-token")

    assert job_condition(with_token)[0] == job_condition(without_token)[0] == "Complete"
    (pod,) = pods_of(kube, namespace, "with-token")
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert message == f"system:serviceaccount:{namespace}:default {pod['metadata']['name']}"
    (pod,) = pods_of(kube, namespace, "without-token")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "no credentials"


def test_an_image_the_node_lacks_never_starts_and_the_jobs_deadline_ends_it(kube, node, namespace):
    missing = {"name": "main", "image": "registry.invalid/nothing:1", "command": ["run"]}
    kube.create(job("unpulled", namespace, {"containers": [missing]}, activeDeadlineSeconds=5))

    def backing_off():
        pods = pods_of(kube, namespace, "unpulled")
        return pods and (pods[0]["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get("reason") == "ImagePullBackOff"

    eventually(backing_off, "ImagePullBackOff")
    current = finished_job(kube, namespace, "unpulled")

    assert job_condition(current) == ("Failed", "DeadlineExceeded")
    (record,) = node.pods(lambda r: r.namespace == namespace and r.job == "unpulled")
    assert record.containers == {} and record.waiting_reason == "ImagePullBackOff"
