"""The operator against a real API server: CRDs, reconcile, status, events, garbage collection, suspend,
a whole epoch with the nodes played by the test, and a re-merge when the experts change.

The control plane has no kubelet. Where a pod must run, `Node` plays the kubelet: it runs the controller's
own code in a thread, answers evaluation pods with scores it computes from their recipes, runs the real
export, and writes each pod's terminal status — termination message included — as a kubelet would.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from kubernetes import client as k8s

from evomerge.evaluate.scores_message import encode_scores
from evomerge.k8s import operator_main
from evomerge.k8s.client import Invalid, Kube
from evomerge.k8s.controller_main import run_controller
from evomerge.k8s.history_configmap import ConfigMapHistory, HistoryConflict
from evomerge.k8s.messages import encode_export
from evomerge.k8s.render_eval import render_eval_job
from evomerge.k8s.render_model import render_export_job
from evomerge.k8s.render_search import CONTROLLER_JOB_ENV, Epoch, render_controller_job, render_namespace_accounts
from evomerge.k8s.settings import ClusterSettings
from evomerge.k8s.worker_main import content_hash, export_model
from evomerge.runner.loop import SearchFailed
from evomerge.spec.merge_search import MergeSearchSpec
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "evomerge.dev", "v1alpha1"


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def kube(control_plane, api_client) -> Kube:
    extensions = k8s.ApiextensionsV1Api(api_client)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            extensions.create_custom_resource_definition(crd)
        except k8s.ApiException as error:
            if error.status != 409:
                raise
            current = extensions.read_custom_resource_definition(crd["metadata"]["name"])
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(crd["metadata"]["name"], crd)
    connection = Kube.connect(str(control_plane.kubeconfig))

    def served() -> bool:
        try:
            connection.list("MergeSearch", "default")
            return True
        except Exception:  # noqa: BLE001 - discovery lags a moment behind the Established condition
            return False

    eventually(served, "the evomerge CRDs to be served")
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def operator(kube, control_plane):
    """The operator, cluster-wide, in a thread of this process (kopf's own event loop)."""
    stop, ready = threading.Event(), threading.Event()
    port = free_port()
    thread = threading.Thread(
        target=operator_main.run, name="evomerge-operator",
        kwargs=dict(namespaces=[], kubeconfig=str(control_plane.kubeconfig), metrics_port=port, liveness=None,
                    resync_seconds=5.0, stop_flag=stop, ready_flag=ready),
        daemon=True,
    )
    thread.start()
    assert ready.wait(60), "the operator did not start"
    yield port
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the operator did not stop"


def search_body(name: str, namespace: str, family: dict[str, Path] | None = None, **spec: Any) -> dict:
    models = family or {"base": Path("/models/base"), "expert0": Path("/models/e0"), "expert1": Path("/models/e1")}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MergeSearch", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "baseModel": {"uri": f"file://{models['base']}"},
            "experts": [{"name": "e0", "uri": f"file://{models['expert0']}"}, {"name": "e1", "uri": f"file://{models['expert1']}"}],
            "search": {"algorithm": "random", "populationSize": 3, "maxGenerations": 2, "seed": 3},
            "evaluation": {"parallelism": 2, "candidatesPerJob": 2},
            "objectives": [{"task": "tiny_colors"}],
            **spec,
        },
    }


def status_of(kube: Kube, namespace: str, name: str, kind: str = "MergeSearch") -> dict:
    return (kube.get(kind, namespace, name) or {}).get("status") or {}


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in kube.list("Event", namespace) if e["involvedObject"]["name"] == name]


def controller_jobs(kube: Kube, namespace: str) -> list[dict]:
    return kube.list("Job", namespace, "evomerge.dev/component=controller")


# ---- admission --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"experts": [{"name": "e0", "uri": "x"}]}, "list at least two experts, or set expertSelector"),
    ({"merge": {"evolve": ["weight", "density"]}}, "spec.merge.evolve: Invalid value: merge.evolve: method task_arithmetic "
     "evolves weight only — remove the others from evolve, or change merge.method (density applies to ties"),
    ({"merge": {"method": "slerp", "evolve": ["weight"]}}, "merge.evolve: method slerp evolves t only"),
    ({"merge": {"method": "slerp"}}, "merge.evolve: method slerp evolves t only"),
    ({"merge": {"bounds": {"weight": ["0.9", "0.1"]}}}, "merge.bounds.weight: the low bound must be below the high bound"),
    ({"merge": {"method": "ties", "bounds": {"density": ["0", "0.5"]}}},
     "merge.bounds.density must lie within (0, 1]: density is the fraction of a task vector kept"),
    ({"merge": {"layerGroups": 4}}, "merge.layerGroups is only read with granularity layerGroups"),
    ({"search": {"algorithm": "nsga2"}}, "spec.objectives: Invalid value: objectives: search.algorithm nsga2 searches a "
     "Pareto front and needs at least 2 objectives"),
    ({"search": {"algorithm": "cmaes", "mode": "async"}}, "spec.search.mode: Invalid value: search.mode: async asks one "
     "candidate at a time, and search.algorithm cmaes proposes whole generations"),
    ({"search": {"algorithm": "nsga2", "mode": "async"}}, "search.algorithm nsga2 proposes whole generations"),
    ({"search": {"mode": "async", "evogm": {"generatorReinit": "perIteration"}}},
     "spec.search.evogm.generatorReinit: Invalid value: search.evogm.generatorReinit: perIteration needs search.mode: "
     "generational"),
    ({"search": {"evogm": {"restartSigma": "2"}}},  # an optional Number keeps its bounds
     "spec.search.evogm.restartSigma: Invalid value: \"2\": must be greater than 0 and at most 1"),
    ({"search": {"algorithm": "ga", "ga": {"tournamentSize": 21}}},  # over the GA's default populationSize
     "spec.search.ga.tournamentSize: Invalid value: search.ga.tournamentSize: at most populationSize"),
    ({"objectives": [{"task": "a"}, {"task": "a"}]}, "Duplicate value"),
    ({"experts": [{"name": "e0", "uri": "x"}, {"name": "e0", "uri": "y"}]}, "Duplicate value"),
    ({"evaluation": {"engine": "triton"}}, "Unsupported value"),
    ({"evaluation": {"parallelism": 0}}, "should be greater than or equal to 1"),
    ({"evaluation": {"gpuMemory": "80GB"}}, "spec.evaluation.gpuMemory"),
    ({"search": {"populationSize": "8"}}, "must be of type integer"),
    ({"search": {"algorithm": "ga", "refine": {"evaluations": 160}}}, "spec.search.refine.evaluations: Invalid value: "
     "search.refine.evaluations: the refinement's evaluations come out of the search's budget"),
    ({"search": {"maxEvaluations": 30, "refine": {"evaluations": 30}}}, "search.refine.evaluations: the refinement's"),
    ({"search": {"algorithm": "nsga2", "refine": {"evaluations": 2}}, "objectives": [{"task": "a"}, {"task": "b"}]},
     "spec.search.refine: Invalid value: search.refine: search.algorithm nsga2 searches a Pareto front"),
    ({"search": {"refine": {"evaluations": 0}}}, "should be greater than or equal to 1"),
    ({"storage": {"output": {"uri": "pvc://o/x", "promotion": {"policy": "gated"}}}},
     "storage.output.promotion.policy: gated compares versions on heldOut items"),
    ({"storage": {"output": {"uri": "pvc://o/x", "promotion": {"guarded": [{"task": "h"}]}}}},
     "storage.output.promotion.guarded: only a gated promotion guards objectives"),
    ({"heldOut": [{"task": "h"}], "storage": {"output": {"uri": "pvc://o/x", "promotion": {"guarded": [{"task": "h", "metric": "f1"}]}}}},
     "storage.output.promotion.guarded: every guarded task/metric must be a heldOut objective"),
    ({"heldOut": [{"task": "h"}], "storage": {"output": {"uri": "pvc://o/x", "promotion": {"significance": "1.5"}}}},
     "spec.storage.output.promotion.significance: Invalid value: \"1.5\": must be greater than 0 and less than 1"),
    ({"heldOut": [{"task": "h"}], "storage": {"output": {"uri": "pvc://o/x", "promotion": {"guarded": [{"task": "h", "tolerance": "-1"}]}}}},
     "must be at least 0"),
])
def test_the_api_server_refuses_what_the_schema_can_say(kube, namespace, change, message):
    body = search_body("bad", namespace)
    body["spec"].update(change)

    with pytest.raises(Invalid) as refused:
        kube.create(body)

    assert message in str(refused.value)


@pytest.mark.parametrize("search", [
    {"refine": {"evaluations": 159}},  # evogm's default budget, 20 × 4 × 2, left unset
    {"algorithm": "cmaes", "populationSize": 10, "refine": {"evaluations": 79}},
], ids=["evogm-defaults", "cmaes-population-set"])
def test_the_api_server_admits_a_refinement_inside_the_budget_the_defaults_make(kube, namespace, search):
    body = search_body("refined", namespace)
    body["spec"]["search"] = search

    assert kube.create(body)["spec"]["search"]["refine"]["evaluations"] == search["refine"]["evaluations"]


@pytest.mark.parametrize("change", [
    {"experts": [{"name": "e0", "uri": "x"}], "merge": {"method": "slerp", "evolve": ["t"]}},
    {"experts": [], "expertSelector": {"matchLabels": {"family": "f"}}, "merge": {"method": "slerp", "evolve": ["t"]}},
    {"merge": {"method": "slerp", "dataFlow": {"enabled": True}}},  # a path search reads no method
], ids=["slerp-one-listed-expert", "slerp-selected-expert", "data-flow-ignores-slerp"])
def test_the_api_server_admits_a_slerp_over_one_expert(kube, namespace, change):
    body = search_body("slerp", namespace)
    body["spec"].update(change)

    assert kube.create(body)["spec"]["merge"]["method"] == "slerp"


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("cluster-*.yaml")), ids=lambda p: p.name)
def test_the_cluster_examples_are_accepted(kube, namespace, example):
    for document in yaml.safe_load_all(example.read_text()):
        document["metadata"]["namespace"] = namespace
        stored = kube.create(document)
        assert stored["spec"]  # defaulted and pruned by the API server, not refused


@pytest.mark.parametrize("engine", ["transformers", "tgi", "vllm", "sglang"])
def test_every_rendered_pod_is_admitted_under_the_restricted_pod_security_standard(kube, namespace, engine):
    kube.patch("Namespace", None, namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    settings = ClusterSettings()
    search = kube.create(search_body("jp", namespace, storage={"output": {"uri": "pvc://out/jp"}},
                                     evaluation={"engine": engine, "candidatesPerJob": 1}))
    spec = MergeSearchSpec.model_validate(search["spec"])
    for account in render_namespace_accounts(namespace, settings):
        kube.create(account)
    controller = kube.create(render_controller_job(search, Epoch(1, spec), settings))
    evaluation = kube.create(render_eval_job(search, 1, "jp-e1-c000000-1", ["c000000"], spec, settings, controller))
    model = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MergedModel", "metadata": {"name": "jp", "namespace": namespace, "uid": "u"},
             "spec": {"search": "jp", "version": 1, "recipe": {"method": "linear", "experts": []}, "outputUri": "pvc://out/jp/v1"}}
    export = kube.create(render_export_job(model | {"metadata": {**model["metadata"], "uid": search["metadata"]["uid"]}}, spec, settings))

    for job in (controller, evaluation, export):
        # Each Job's pod, created with server-side dry-run: admission (restricted Pod Security included) answers
        # at once, with its reason when it refuses, and no Job controller backoff stands in between.
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": job["spec"]["template"]["spec"],
               "metadata": {"name": f"{job['metadata']['name']}-pod", "namespace": namespace,
                            "labels": job["spec"]["template"]["metadata"].get("labels", {})}}
        admitted = kube._send("POST", f"/api/v1/namespaces/{namespace}/pods", [("dryRun", "All")], body=pod)
        assert admitted["metadata"]["name"] == pod["metadata"]["name"]


# ---- reconcile ----------------------------------------------------------------------------------------------
def test_a_search_gets_its_controller_job_status_and_events(kube, operator, namespace):
    created = kube.create(search_body("jp", namespace))

    (job,) = eventually(lambda: controller_jobs(kube, namespace), "the controller Job")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("MergeSearch", created["metadata"]["uid"], True)
    assert "app.kubernetes.io/instance" not in job["metadata"]["labels"]
    status = eventually(lambda: status_of(kube, namespace, "jp").get("phase") == "Running" and status_of(kube, namespace, "jp"),
                        "the search to run")
    assert status["observedGeneration"] == created["metadata"]["generation"]
    assert (condition(status, "Ready")["status"], condition(status, "Progressing")["status"]) == ("False", "True")
    assert condition(status, "Degraded")["status"] == "False"
    assert status["controllerJob"] == job["metadata"]["name"] and status["epoch"] == 1
    eventually(lambda: "EpochStarted" in reasons(kube, namespace, "jp"), "the EpochStarted event")
    stored = kube.get("MergeSearch", namespace, "jp")
    assert not stored["metadata"].get("finalizers")  # deletable even while the operator is down
    assert not stored["metadata"].get("annotations")  # no operator bookkeeping on the user's object
    accounts = {a["metadata"]["name"]: a for a in kube.list("ServiceAccount", namespace)}
    assert accounts["evomerge-evaluation"]["automountServiceAccountToken"] is False
    assert "evomerge-controller" in accounts


def test_suspend_stops_the_controller_and_resume_starts_it_again(kube, operator, namespace):
    kube.create(search_body("jp", namespace))
    (job,) = eventually(lambda: controller_jobs(kube, namespace), "the controller Job")

    kube.patch("MergeSearch", namespace, "jp", {"spec": {"suspend": True}})
    eventually(lambda: status_of(kube, namespace, "jp").get("phase") == "Suspended", "the search to be suspended")
    eventually(lambda: not [j for j in controller_jobs(kube, namespace) if not j["metadata"].get("deletionTimestamp")],
               "the controller Job to go")
    assert condition(status_of(kube, namespace, "jp"), "Ready")["reason"] == "Suspended"
    eventually(lambda: "Suspended" in reasons(kube, namespace, "jp"), "the Suspended event")

    kube.patch("MergeSearch", namespace, "jp", {"spec": {"suspend": False}})
    eventually(lambda: status_of(kube, namespace, "jp").get("phase") == "Running", "the search to resume")
    (again,) = eventually(lambda: controller_jobs(kube, namespace), "the controller Job to come back")
    assert again["metadata"]["name"] == job["metadata"]["name"] and again["metadata"]["uid"] != job["metadata"]["uid"]
    assert condition(status_of(kube, namespace, "jp"), "Ready")["observedGeneration"] == 3


def test_a_search_the_schema_cannot_catch_is_degraded_and_the_operator_goes_on(kube, operator, namespace):
    broken = search_body("no-experts", namespace, experts=[], expertSelector={"matchLabels": {"family": "none"}})
    kube.create(broken)

    status = eventually(lambda: condition(status_of(kube, namespace, "no-experts"), "Degraded").get("status") == "True"
                        and status_of(kube, namespace, "no-experts"), "the Degraded condition")
    assert condition(status, "Degraded")["reason"] == "InvalidSpec"
    assert "list at least two experts" in condition(status, "Degraded")["message"]
    assert status["phase"] == "Failed"
    eventually(lambda: "InvalidSpec" in reasons(kube, namespace, "no-experts"), "the InvalidSpec warning")
    assert not controller_jobs(kube, namespace)

    kube.create(search_body("fine", namespace))
    eventually(lambda: controller_jobs(kube, namespace), "the valid search's controller Job")


def test_experts_picked_by_selector_and_a_new_one_starts_the_next_epoch(kube, operator, namespace):
    def expert(name: str, **spec: Any) -> dict:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Expert",
                "metadata": {"name": name, "namespace": namespace, "labels": {"family": "tiny"}},
                "spec": {"uri": f"file:///models/{name}", **spec}}

    kube.create(expert("alpha"))
    kube.create(expert("beta"))
    kube.create(expert("alien", baseModel="file:///models/other-base"))
    kube.create(search_body("jp", namespace, experts=[], expertSelector={"matchLabels": {"family": "tiny"}}))

    def epoch_experts(epoch: int) -> list[str] | None:
        configmap = kube.get("ConfigMap", namespace, f"jp-e{epoch}")
        return configmap and [e["name"] for e in json.loads(configmap["data"]["spec.json"])["spec"]["experts"]]

    assert eventually(lambda: epoch_experts(1), "epoch 1") == ["alpha", "beta"]
    alien = eventually(lambda: status_of(kube, namespace, "alien", "Expert").get("reason") == "BaseModelMismatch"
                       and status_of(kube, namespace, "alien", "Expert"), "the alien Expert to be judged against the search")
    assert alien["compatible"] is False and "merges onto" in alien["message"]
    assert status_of(kube, namespace, "alpha", "Expert")["compatible"] is True

    kube.create(expert("gamma"))

    assert eventually(lambda: epoch_experts(2), "epoch 2") == ["alpha", "beta", "gamma"]
    eventually(lambda: status_of(kube, namespace, "jp").get("epoch") == 2, "the search to report epoch 2")
    def epoch_started() -> list[str]:  # Events are posted after the status, from a thread of their own
        return [e["message"] for e in kube.list("Event", namespace) if e["reason"] == "EpochStarted"]

    eventually(lambda: len(epoch_started()) == 2, "the EpochStarted event of epoch 2")
    assert any("experts changed (+gamma)" in m for m in epoch_started()), epoch_started()
    (job,) = eventually(lambda: [j for j in controller_jobs(kube, namespace) if j["metadata"]["labels"]["evomerge.dev/epoch"] == "2"
                                 and not j["metadata"].get("deletionTimestamp")], "epoch 2's controller")


# ---- a whole epoch, nodes played by the test ------------------------------------------------------------
def finish_pod(kube: Kube, pod: dict, container: str, message: str, exit_code: int = 0) -> None:
    """What the kubelet reports when a pod's last container ends."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                            "message": message, "startedAt": now, "finishedAt": now}}
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "startTime": now,
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}],
        "containerStatuses": [{"name": container, "image": "evomerge", "imageID": "", "ready": False, "restartCount": 0,
                               "state": state}],
    }
    kube.patch("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"], {"status": status}, subresource="status")


class Node(threading.Thread):
    """Plays the kubelet for one namespace: controller pods run the controller's code, evaluation pods
    are answered with `score(recipe)`, export pods run the real export into local directories. `claims` is
    the local directory behind the pods' claim mounts (<claims>/<claim>/…), as the kubelet would mount them."""

    def __init__(self, kube: Kube, namespace: str, score: Callable[[dict], float], controller_kube: Kube | None = None,
                 crash: str | None = None, claims: Path | None = None):
        super().__init__(daemon=True, name=f"node-{namespace}")
        self.kube, self.namespace, self.score = kube, namespace, score
        self.claims = claims
        self.crash = crash  # when set, every evaluation pod dies with this in its log
        self.controller_kube = controller_kube or kube  # the controller's own credentials, as its pod would have
        self.seen: set[str] = set()
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []
        self.evaluation_pods: list[dict] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                for pod in self.kube.list("Pod", self.namespace):
                    uid = pod["metadata"]["uid"]
                    if uid not in self.seen and pod.get("status", {}).get("phase") in (None, "Pending"):
                        self.seen.add(uid)
                        threading.Thread(target=self._play, args=(pod,), daemon=True).start()
            except Exception as error:  # noqa: BLE001 - reported by stop()
                self.errors.append(error)
            time.sleep(0.1)

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        assert not self.errors, self.errors

    def _play(self, pod: dict) -> None:
        try:
            component = pod["metadata"]["labels"].get("evomerge.dev/component")
            handlers = {"controller": self._controller, "evaluation": self._evaluation, "comparison": self._evaluation,
                        "export": self._export}
            handlers[component](pod)
        except Exception as error:  # noqa: BLE001
            self.errors.append(error)

    def _controller(self, pod: dict) -> None:
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in container["env"]}  # as the kubelet: the API server drops an empty value
        if self.claims is not None:
            env["EVOMERGE_PVC_ROOT"] = str(self.claims)
        command = container["command"]
        namespace, name = command[command.index("--search") + 1].split("/")
        epoch = int(command[command.index("--epoch") + 1])
        try:
            result = run_controller(self.controller_kube, namespace, name, epoch, ClusterSettings.from_env(env), env[CONTROLLER_JOB_ENV])
        except SearchFailed as error:  # what `evomerge controller` reports and exits with
            finish_pod(self.kube, pod, "controller", f"SearchFailed: {error}", exit_code=1)
            return
        finish_pod(self.kube, pod, "controller", f"finished ({result.stop_reason})")

    def _evaluation(self, pod: dict) -> None:
        self.evaluation_pods.append(pod)
        if self.crash is not None:
            finish_pod(self.kube, pod, "score", self.crash, exit_code=1)
            return
        job_name = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        configmap = eventually(lambda: self.kube.get("ConfigMap", self.namespace, job_name), "the recipes ConfigMap")
        items = json.loads(configmap["data"]["recipes.json"])
        spec_map = self.kube.get("ConfigMap", self.namespace, next(v["configMap"]["name"] for v in pod["spec"]["volumes"] if v["name"] == "spec"))
        spec = MergeSearchSpec.model_validate(json.loads(spec_map["data"]["spec.json"])["spec"])
        held_out = "--held-out" in pod["spec"]["containers"][0]["command"]
        keys = [o.key for o in (spec.held_out if held_out else spec.objectives)]
        results = [{"id": i["id"], "scores": {k: self.score(i["recipe"]) for k in keys}} for i in items]
        finish_pod(self.kube, pod, "score", encode_scores(results, keys))

    def _export(self, pod: dict) -> None:
        container = pod["spec"]["containers"][0]
        command = container["command"]
        job_name = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        configmap = self.kube.get("ConfigMap", self.namespace, job_name)
        work = Path(f"/tmp/evomerge-node-{self.namespace}-{job_name}")
        work.mkdir(parents=True, exist_ok=True)
        for key in ("recipe.json", "spec.json"):
            (work / key).write_text(configmap["data"][key])
        out = command[command.index("--out") + 1]
        if self.claims is not None:
            out = str(self.claims) + out.removeprefix(ClusterSettings().pvc_root)
        result = export_model(work / "recipe.json", work / "spec.json", Path(out))
        finish_pod(self.kube, pod, "export", encode_export(result))


def climbable_score(recipe: dict) -> float:
    """A score the search can climb: how much of experts e0 and (once it joins) e2 the merge takes."""
    return round(sum(e["params"]["weight"]["all"] for e in recipe["experts"] if e["name"] in ("e0", "e2")), 6)


def test_a_whole_epoch_publishes_a_merged_model_and_a_new_expert_publishes_the_next_version(
        kube, operator, namespace, tmp_path_factory):
    from tests.support.tiny_models import build_family

    family = build_family(tmp_path_factory.mktemp("family"), n_experts=3)
    claims = tmp_path_factory.mktemp("claims")
    output = claims / "published" / "jp"
    node = Node(kube, namespace, climbable_score, claims=claims)
    node.start()
    try:
        kube.create(search_body("jp", namespace, family, storage={"output": {"uri": "pvc://published/jp"}}))

        status = eventually(lambda: status_of(kube, namespace, "jp").get("phase") == "Succeeded" and status_of(kube, namespace, "jp"),
                            "the search to succeed", timeout=90)
        assert (status["evaluations"], status["generation"], status["round"]) == (6, 2, 1)
        assert condition(status, "Ready")["status"] == "True"
        assert float(status["best"]["score"]) == pytest.approx(climbable_score(status["best"]["recipe"]), abs=1e-6)
        assert len(status["generations"]) == 2 and status["stopReason"] == "maxGenerations reached"
        evaluation_owners = {p["metadata"]["ownerReferences"][0]["kind"] for p in node.evaluation_pods}
        assert evaluation_owners == {"Job"}
        assert kube.list("ConfigMap", namespace, "evomerge.dev/component=history")  # the replayable history

        model = eventually(lambda: status_of(kube, namespace, "jp", "MergedModel").get("phase") == "Ready"
                           and kube.get("MergedModel", namespace, "jp"), "the MergedModel to be exported", timeout=90)
        assert model["spec"]["version"] == 1 and model["status"]["version"] == 1
        assert model["spec"]["recipe"] == status["best"]["recipe"]
        assert all(len(entry["sha256"]) == 64 for entry in model["status"]["lineage"])
        assert (output / "v1" / "config.json").exists() and list((output / "v1").glob("*.safetensors"))
        assert model["status"]["outputSha256"] == content_hash(output / "v1")  # read back where the model says

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{operator}/metrics", timeout=5).read().decode()
        assert 'evomerge_searches{phase="Succeeded"}' in metrics
        assert f'evomerge_search_best_score{{namespace="{namespace}",objective="fitness",search="jp"}}' in metrics

        experts = kube.get("MergeSearch", namespace, "jp")["spec"]["experts"]
        kube.patch("MergeSearch", namespace, "jp", {"spec": {"experts": experts + [{"name": "e2", "uri": f"file://{family['expert2']}"}]}})

        eventually(lambda: status_of(kube, namespace, "jp").get("epoch") == 2 and status_of(kube, namespace, "jp")["phase"] == "Succeeded",
                   "epoch 2 to succeed", timeout=90)
        second = status_of(kube, namespace, "jp")
        assert second["round"] == 2 and second["evaluations"] == 12  # counters go on across epochs
        assert second["epochRound"] == 1 and second["epochGeneration"] == 2  # kubectl's ROUND/GENERATION: this epoch's
        assert float(second["best"]["score"]) > float(status["best"]["score"])  # e2 helps, and the elite was the floor
        seeded = json.loads(kube.get("ConfigMap", namespace, "jp-e2")["data"]["seeds.json"])
        assert seeded == [status["best"]["recipe"]]
        model = eventually(lambda: status_of(kube, namespace, "jp", "MergedModel").get("version") == 2
                           and kube.get("MergedModel", namespace, "jp"), "MergedModel version 2", timeout=90)
        assert model["spec"]["recipe"] == second["best"]["recipe"] and model["status"]["outputUri"] == "pvc://published/jp/v2"
        assert (output / "v2" / "config.json").exists() and (output / "v1" / "config.json").exists()
    finally:
        node.stop()


def test_failing_evaluations_warn_and_too_many_fail_the_search_with_the_reason(kube, operator, namespace, tmp_path_factory):
    from tests.support.tiny_models import build_family

    family = build_family(tmp_path_factory.mktemp("family"))
    node = Node(kube, namespace, climbable_score, crash="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    node.start()
    try:
        kube.create(search_body("jp", namespace, family, search={"algorithm": "random", "populationSize": 2, "maxGenerations": 1},
                                evaluation={"parallelism": 2, "candidatesPerJob": 1, "maxFailedEvaluations": 1}))

        status = eventually(lambda: status_of(kube, namespace, "jp").get("phase") == "Failed" and status_of(kube, namespace, "jp"),
                            "the search to fail", timeout=90)
        degraded = condition(status, "Degraded")
        assert degraded["reason"] == "SearchFailed" and "maxFailedEvaluations is 1" in degraded["message"]
        assert "CUDA out of memory" in degraded["message"]  # the scorer's own words reach the user
        assert status["failedEvaluations"] == 2
        warnings = eventually(lambda: [e["message"] for e in kube.list("Event", namespace) if e["reason"] == "EvaluationFailed"],
                              "EvaluationFailed warnings")
        assert "BackoffLimitExceeded" in warnings[0] and "CUDA out of memory" in warnings[0]
        assert "SearchFailed" in reasons(kube, namespace, "jp")
    finally:
        node.stop()


def test_history_configmaps_replay_in_order_across_chunks_and_refuse_a_second_writer(kube, namespace):
    search = kube.create(search_body("jp", namespace))
    history = ConfigMapHistory(kube, search, epoch=1, chunk_bytes=300)
    events = [{"type": "result", "id": f"c{i:06d}", "scores": {"t/acc": i / 10}, "error": None} for i in range(12)]

    assert history.events() == []
    for event in events:
        history.append(event)

    chunks = kube.list("ConfigMap", namespace, "evomerge.dev/component=history")
    assert len(chunks) > 2 and all(c["metadata"]["ownerReferences"][0]["uid"] == search["metadata"]["uid"] for c in chunks)
    replayed = ConfigMapHistory(kube, search, epoch=1, chunk_bytes=300)
    assert replayed.events() == events

    history.append({"type": "tell", "ids": ["c000000"]})  # the first writer goes on...
    with pytest.raises(HistoryConflict, match="another controller"):
        replayed.append({"type": "tell", "ids": ["c000001"]})  # ...and a stale second writer is refused


# The garbage collector watches a new CRD's objects only after its next discovery resync: last, so it has run.
def test_deleting_a_search_deletes_its_children(kube, operator, namespace):
    kube.create(search_body("jp", namespace))
    eventually(lambda: controller_jobs(kube, namespace), "the controller Job")

    kube.delete("MergeSearch", namespace, "jp")

    eventually(lambda: not controller_jobs(kube, namespace), "the garbage collector to delete the controller Job", timeout=60)
    eventually(lambda: not kube.list("ConfigMap", namespace, "evomerge.dev/search=jp"), "the epoch ConfigMap to go", timeout=60)
