import datetime

from evomerge.k8s.evaluation_jobs import STUCK_GRACE_SECONDS
from evomerge.k8s.jobs import cause, job_age, stuck_reason


def pod(conditions=(), containers=()) -> dict:
    return {"metadata": {"name": "p"}, "status": {"conditions": list(conditions), "containerStatuses": list(containers)}}


def test_a_pod_the_scheduler_cannot_place_is_stuck_with_the_schedulers_message():
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": '0/1 nodes are available: persistentvolumeclaim "cache" not found.'}
    reason, message = stuck_reason([pod([unschedulable])])
    assert reason == "Unschedulable" and '"cache" not found' in message


def test_an_image_that_cannot_be_pulled_is_stuck_naming_the_container():
    waiting = {"name": "controller", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull ghcr.io/x: not found"}}}
    reason, message = stuck_reason([pod(containers=[waiting])])
    assert reason == "ImagePullBackOff" and "controller" in message and "ghcr.io/x" in message


def test_pods_that_are_starting_or_running_are_not_stuck():
    creating = {"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}
    running = {"name": "c", "state": {"running": {}}}
    scheduled = {"type": "PodScheduled", "status": "True"}
    assert stuck_reason([pod([scheduled], [creating]), pod([scheduled], [running])]) is None


def test_a_traceback_becomes_its_last_line_and_any_message_one_line():
    traceback = ('Traceback (most recent call last):\n  File "/app/evomerge/k8s/evaluation_jobs.py", line 84, in create\n'
                 '    created = self.kube.create(job)\n' + "  frames\n" * 200 +
                 'evomerge.k8s.client.Invalid: 422 Invalid: Job.batch "x" is invalid: spec.template.spec.nodeSelector: Invalid value\n')

    assert cause(traceback) == 'evomerge.k8s.client.Invalid: 422 Invalid: Job.batch "x" is invalid: spec.template.spec.nodeSelector: Invalid value'
    assert cause("SearchFailed: 3 of 4\n evaluations failed") == "SearchFailed: 3 of 4 evaluations failed"
    assert cause(None) == ""


def test_a_jobs_age_counts_from_its_start_so_time_queued_in_kueue_never_makes_it_look_stuck():
    def stamp(seconds_ago: int) -> str:
        return (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    queued = {"metadata": {"creationTimestamp": stamp(3600)}, "spec": {"suspend": True}}
    admitted = {"metadata": {"creationTimestamp": stamp(3600)}, "status": {"startTime": stamp(10)}}
    assert job_age(queued) > STUCK_GRACE_SECONDS > job_age(admitted)  # an hour in the queue; admitted 10 s ago
