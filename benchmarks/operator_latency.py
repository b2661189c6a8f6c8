"""The operator's reaction times and API load, against a real API server (tests/support/controlplane.py).

    nice .venv/bin/python benchmarks/operator_latency.py [--searches 50] [--samples 5]

Everything runs in this process against a fresh etcd + kube-apiserver + kube-controller-manager: the
operator (kopf, cluster-wide), and — playing the kubelet as tests/k8s/test_operator.py does — the
controller's own code for controller pods, and instant synthetic scores for evaluation pods (this measures
the operator and controller, not scoring). There is no scheduler, image pull or container start: in a real
cluster, add those to the first two numbers.

  apply → first evaluation Job   a MergeSearch created → the controller Job (operator) → the first evaluation
                                 Job (controller). The first sample pays the controller's imports (torch,
                                 transformers: what a fresh controller pod pays); later ones do not.
                                 Peer: the API floor, creating a Job and seeing it come back on a watch.
  reconcile latency              N searches created at once → each reports status.observedGeneration; then
                                 all N suspended at once → each reports phase Suspended. p50 / p99.
                                 Peer: one status PATCH round trip (the least any reconcile must do).
                                 With the operator's requests per reconcile: on a small machine the bursts
                                 are bound by the API server's CPU, so fewer requests is what shortens them;
                                 the CPU seconds each process used in each burst show where it went.
  API requests per generation    one search (population 8, 3 generations, 4 Jobs in parallel, 2 candidates
                                 per Job): requests of the controller, of the operator's client and of kopf,
                                 per generation. Peer: the evaluation Jobs a generation needs.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder leads sys.path, where a sibling shadows the installed module of its name
# (benchmarks/evaluate.py hides Hugging Face's `evaluate`): drop it before anything else is imported. For the
# same reason this file is operator_latency.py, not operator.py, which would hide the stdlib module `operator`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import json
import statistics
import shlex
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "k8s"))  # the kubelet player of the operator tests

from test_operator import Node, search_body, climbable_score  # noqa: E402

from evomerge.k8s import operator_main  # noqa: E402
from evomerge.k8s.client import Kube  # noqa: E402
from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.tiny_models import build_family  # noqa: E402

TARGET_FIRST_JOB_S = 2.0
TARGET_RECONCILE_P99_S = 1.0
LONE_SEARCHES = 5  # created one at a time after the bursts


def count_kopf_requests() -> Counter:
    """kopf talks through aiohttp; count its requests by method (instrumentation, not a change of behaviour)."""
    import aiohttp

    counts: Counter = Counter()
    original = aiohttp.ClientSession._request

    async def counted(self, method, url, **kwargs):
        counts["WATCH" if "watch=true" in str(url) or (kwargs.get("params") or {}).get("watch") else method] += 1
        return await original(self, method, url, **kwargs)

    aiohttp.ClientSession._request = counted
    return counts


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")


def new_namespace(kube: Kube, name: str) -> str:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for(lambda: kube.get("ServiceAccount", name, "default"), 30, f"namespace {name}")
    return name


class FirstSeen(threading.Thread):
    """Records when each Job of a namespace is first seen on a watch."""

    def __init__(self, kube: Kube, namespace: str):
        super().__init__(daemon=True)
        self.kube, self.namespace, self.seen, self.stop = kube, namespace, {}, threading.Event()
        self.ready = threading.Event()

    def components(self) -> dict[str, float]:
        """When the first Job of each evomerge component appeared."""
        out: dict[str, float] = {}
        for seen, labels in sorted(self.seen.values(), key=lambda item: item[0]):
            out.setdefault(labels.get("evomerge.dev/component", ""), seen)
        return out

    def run(self) -> None:
        _, version = self.kube.list_with_version("Job", self.namespace)
        self.ready.set()
        while not self.stop.is_set():
            for kind, job in self.kube.watch("Job", self.namespace, None, version, 5):
                version = job["metadata"].get("resourceVersion", version)
                if kind == "ADDED":
                    self.seen.setdefault(job["metadata"]["name"], (time.perf_counter(), job["metadata"]["labels"]))


def api_floor(kube: Kube, namespace: str, samples: int) -> float:
    """Create a Job and see it on a watch: what any operator needs at least to make a child."""
    watcher = FirstSeen(kube, namespace)
    watcher.start()
    watcher.ready.wait(10)
    times = []
    for i in range(samples):
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"floor-{i}", "namespace": namespace},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}
        start = time.perf_counter()
        kube.create(job)
        seen = wait_for(lambda: watcher.seen.get(f"floor-{i}"), 10, "the floor Job")
        times.append(seen[0] - start)
    watcher.stop.set()
    return statistics.median(times)


def first_evaluation_job(kube: Kube, family: dict, samples: int) -> list[tuple[float, float]]:
    """(apply → controller Job, apply → first evaluation Job) per sample, each in a fresh namespace."""
    out = []
    for i in range(samples):
        namespace = new_namespace(kube, f"first-job-{i}")
        watcher = FirstSeen(kube, namespace)
        watcher.start()
        watcher.ready.wait(10)
        node = Node(kube, namespace, climbable_score)
        node.start()
        start = time.perf_counter()
        kube.create(search_body("s", namespace, family, search={"algorithm": "random", "populationSize": 2, "maxGenerations": 1}))
        seen = wait_for(lambda: "evaluation" in watcher.components() and watcher.components(), 120, "the first evaluation Job")
        out.append((seen["controller"] - start, seen["evaluation"] - start))
        wait_for(lambda: ((kube.get("MergeSearch", namespace, "s") or {}).get("status") or {}).get("phase") == "Succeeded", 120,
                 "the search to finish")
        node.stop()
        watcher.stop.set()
    return out


class StatusWatch(threading.Thread):
    """When each MergeSearch of a namespace first reported (observedGeneration, phase): one watch, no polling."""

    def __init__(self, kube: Kube, namespace: str):
        super().__init__(daemon=True)
        self.kube, self.namespace = kube, namespace
        self.reported: dict[tuple[str, int, str], float] = {}
        self.stop, self.ready = threading.Event(), threading.Event()

    def run(self) -> None:
        _, version = self.kube.list_with_version("MergeSearch", self.namespace)
        self.ready.set()
        while not self.stop.is_set():
            for kind, search in self.kube.watch("MergeSearch", self.namespace, None, version, 5):
                version = search["metadata"].get("resourceVersion", version)
                if kind == "BOOKMARK":
                    continue
                status = search.get("status") or {}
                key = (search["metadata"]["name"], status.get("observedGeneration"), status.get("phase"))
                self.reported.setdefault(key, time.perf_counter())


def controller_imports(samples: int = 3) -> float:
    """What a fresh controller pod pays before its first request: the interpreter and the controller's imports."""
    probe = ("import evomerge.k8s.controller_main, evomerge.runner.loop, evomerge.search.optimizer;"
             "from evomerge.search.genome import genome_for")
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", probe], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reconcile_work(port: int) -> dict[float, float]:
    """Cumulative buckets of evomerge_reconcile_duration_seconds{kind="MergeSearch"}: the operator's own work."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith('evomerge_reconcile_duration_seconds_bucket{kind="MergeSearch"'):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile q of the observations between two scrapes."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts[float("inf")]
    return next(bound for bound, count in counts.items() if count >= q * total)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (Linux /proc/PID/stat, in clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def reconcile_latency(kube: Kube, family: dict, searches: int, pids: dict[str, int]
                      ) -> tuple[list[float], list[float], float, float, dict[str, dict[str, float]]]:
    """Create N searches at once, then suspend them all at once; the time each takes to report the change,
    and the CPU seconds each process used in each burst (on a small machine the bursts are CPU-bound)."""
    namespace = new_namespace(kube, "fifty")
    watch = StatusWatch(kube, namespace)
    watch.start()
    watch.ready.wait(10)
    names = [f"s{i:02d}" for i in range(searches)]
    cpu: dict[str, dict[str, float]] = {}

    def burst(change: Callable[[str], None], generation: int, phase: str) -> list[float]:
        before = cpu_seconds(pids)
        with ThreadPoolExecutor(searches) as pool:
            sent = dict(zip(names, pool.map(lambda n: (time.perf_counter(), change(n))[0], names)))
        wait_for(lambda: all((n, generation, phase) in watch.reported for n in names), 300, f"{searches} searches to report {phase}",
                 interval=0.1)
        after = cpu_seconds(pids)
        cpu[phase] = {name: after[name] - before[name] for name in pids}
        return [watch.reported[(n, generation, phase)] - sent[n] for n in names]

    created = burst(lambda n: kube.create(search_body(n, namespace, family)), 1, "Running")
    suspended = burst(lambda n: kube.patch("MergeSearch", namespace, n, {"spec": {"suspend": True}}), 2, "Suspended")
    alone = []
    for i in range(LONE_SEARCHES):
        start = time.perf_counter()
        kube.create(search_body(f"alone-{i}", namespace, family))
        wait_for(lambda: (f"alone-{i}", 1, "Running") in watch.reported, 60, "a lone search to be reconciled")
        alone.append(watch.reported[(f"alone-{i}", 1, "Running")] - start)
    watch.stop.set()
    floor = []
    for i in range(10):
        start = time.perf_counter()
        kube.patch_status("MergeSearch", namespace, names[0], {"stopReason": f"probe {i}"})
        floor.append(time.perf_counter() - start)
    kube.delete("Namespace", None, namespace)  # its searches must not load the next measurement
    return created, suspended, statistics.median(alone), statistics.median(floor), cpu


def requests_per_generation(kube: Kube, family: dict, metrics_port: int, kopf_counts: Counter,
                            control_plane: ControlPlane) -> dict[str, Any]:
    namespace = new_namespace(kube, "requests")
    generations, population, per_job = 3, 8, 2
    controller_kube = Kube.connect(str(control_plane.kubeconfig))
    node = Node(kube, namespace, climbable_score, controller_kube=controller_kube)  # the controller's requests, counted apart
    node.start()
    operator_before, kopf_before = operator_requests(metrics_port), Counter(kopf_counts)
    kube.create(search_body("s", namespace, family, search={"algorithm": "random", "populationSize": population,
                                                              "maxGenerations": generations},
                            evaluation={"parallelism": 4, "candidatesPerJob": per_job}))
    wait_for(lambda: ((kube.get("MergeSearch", namespace, "s") or {}).get("status") or {}).get("phase") == "Succeeded", 180,
             "the search to finish", interval=0.1)
    node.stop()
    operator_after = operator_requests(metrics_port)
    kopf = Counter(kopf_counts)
    kopf.subtract(kopf_before)
    operator = Counter(operator_after)
    operator.subtract(operator_before)
    return {
        "generations": generations,
        "jobs_per_generation": population / per_job,
        "controller": dict(controller_kube.requests),
        "operator": {k: v for k, v in operator.items() if v},
        "kopf": {k: v for k, v in kopf.items() if v},
    }


def operator_requests(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("evomerge_api_requests_total{"):
            verb = line.split('verb="')[1].split('"')[0]
            out[verb] = float(line.split()[-1])
    return out


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--markdown-out", type=Path, help="Also write the table here (benchmarks/results/operator_latency.md feeds docs/benchmarks.md).")
    args = parser.parse_args()

    build = subprocess.run(["bash", str(REPO / "hack" / "controlplane" / "build.sh")], capture_output=True, text=True, check=True)
    bin_dir = Path(build.stdout.strip().splitlines()[-1])
    kopf_counts = count_kopf_requests()
    with tempfile.TemporaryDirectory() as tmp, ControlPlane.start(bin_dir) as control_plane:
        kube = Kube.connect(str(control_plane.kubeconfig))
        for path in sorted((REPO / "crds").glob("*.yaml")):
            kube.create(yaml.safe_load(path.read_text()))
        wait_for(lambda: _served(kube), 30, "the CRDs")
        family = build_family(Path(tmp) / "family")
        stop, ready = threading.Event(), threading.Event()
        port = _free_port()
        operator = threading.Thread(target=operator_main.run, daemon=True, kwargs=dict(
            namespaces=[], kubeconfig=str(control_plane.kubeconfig), metrics_port=port, liveness=None,
            resync_seconds=3600.0, stop_flag=stop, ready_flag=ready))  # no resync pass inside a measurement
        operator.start()
        ready.wait(60)

        floor_job = api_floor(kube, new_namespace(kube, "floor"), 20)
        warm_up = new_namespace(kube, "warm-up")  # the operator's first reconcile pays its own lazy set-up
        kube.create(search_body("s", warm_up, family))
        wait_for(lambda: ((kube.get("MergeSearch", warm_up, "s") or {}).get("status") or {}).get("phase"), 60, "the warm-up search")
        kube.delete("Namespace", None, warm_up)
        first = first_evaluation_job(kube, family, args.samples)
        imports = controller_imports()
        work_before, requests_before = reconcile_work(port), operator_requests(port)
        pids = {p.name: p.popen.pid for p in control_plane.processes} | {"operator + benchmark": os.getpid()}
        created, suspended, alone, floor_patch, cpu = reconcile_latency(kube, family, args.searches, pids)
        work_p99 = bucket_quantile(work_before, reconcile_work(port), 0.99)
        burst_requests = sum(operator_requests(port).values()) - sum(requests_before.values())
        load = requests_per_generation(kube, family, port, kopf_counts, control_plane)
        stop.set()
        operator.join(30)

    warm = [e for _, e in first[1:]] or [first[0][1]]
    command = shlex.join([".venv/bin/python", "-P", "benchmarks/operator_latency.py", *sys.argv[1:]])
    out = [f"### Operator benchmark (real kube-apiserver, nodes played in-process; {os.cpu_count()} cores)", "",
           f"`{command}`", ""]
    out.append("| measurement | evomerge | peer | ratio | target |")
    out.append("|---|---|---|---|---|")
    out.append(f"| apply → controller Job (median) | {statistics.median(c for c, _ in first):.3f} s | Job create→watch {floor_job:.3f} s "
               f"| {statistics.median(c for c, _ in first) / floor_job:.1f}× | |")
    out.append(f"| apply → first evaluation Job, first controller in this process | {first[0][1]:.3f} s | | | < {TARGET_FIRST_JOB_S:.0f} s "
               f"{'met' if first[0][1] < TARGET_FIRST_JOB_S else 'MISSED'} |")
    out.append(f"| + a fresh controller pod's interpreter and imports (median of 3) | {imports:.3f} s | | | |")
    out.append(f"| apply → first evaluation Job, warm (median of {len(warm)}) | {statistics.median(warm):.3f} s "
               f"| {floor_job:.3f} s | {statistics.median(warm) / floor_job:.1f}× | < {TARGET_FIRST_JOB_S:.0f} s "
               f"{'met' if statistics.median(warm) < TARGET_FIRST_JOB_S else 'MISSED'} |")
    for label, values in (("create", created), ("suspend", suspended)):
        p50, p99 = quantile(values, 0.5), quantile(values, 0.99)
        out.append(f"| reconcile latency, {args.searches} concurrent {label}s, p50 / p99 | {p50:.3f} / {p99:.3f} s "
                   f"| status PATCH {floor_patch:.3f} s | {p99 / floor_patch:.0f}× (p99) | p99 < {TARGET_RECONCILE_P99_S:.0f} s "
                   f"{'met' if p99 < TARGET_RECONCILE_P99_S else 'MISSED'} |")
    out.append(f"| of which inside one reconcile (operator work, not queueing), p99 | ≤ {work_p99:g} s | | | |")
    reconciles = 2 * args.searches + LONE_SEARCHES
    out.append(f"| operator API requests per reconcile in these bursts (Events included) | {burst_requests / reconciles:.1f} "
               f"| | | |")
    for label, phase in (("create", "Running"), ("suspend", "Suspended")):
        used = " / ".join(f"{name} {seconds:.2f}" for name, seconds in cpu[phase].items())
        out.append(f"| CPU seconds in the {label} burst | {used} | | | |")
    out.append(f"| reconcile latency, one search alone (median of {LONE_SEARCHES}) | {alone:.3f} s | status PATCH {floor_patch:.3f} s "
               f"| {alone / floor_patch:.1f}× | |")
    per_generation = {who: sum(v.values()) / load["generations"] for who in ("controller", "operator", "kopf") for v in [load[who]]}
    jobs = load["jobs_per_generation"]
    out.append(f"| API requests per generation: controller | {per_generation['controller']:.1f} | {jobs:.0f} evaluation Jobs "
               f"| {per_generation['controller'] / jobs:.1f} per Job | |")
    out.append(f"| API requests per generation: operator client + kopf | {per_generation['operator']:.1f} + {per_generation['kopf']:.1f} | | | |")
    out += ["", f"Requests by verb over the whole search: `{json.dumps({k: load[k] for k in ('controller', 'operator', 'kopf')})}`; "
            f"first-job samples (controller Job s, evaluation Job s): {[(round(c, 3), round(e, 3)) for c, e in first]}."]
    text = "\n".join(out) + "\n"
    print(text, end="")
    if args.markdown_out:
        args.markdown_out.write_text(text)


def _served(kube: Kube) -> bool:
    try:
        kube.list("MergeSearch", "default")
        return True
    except Exception:  # noqa: BLE001 - discovery lags behind the CRDs for a moment
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
