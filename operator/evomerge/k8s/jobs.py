"""Reading Job and Pod status: finished or not, why it failed, and what a container said when it ended."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

ACTIVE, SUCCEEDED, FAILED = "Active", "Succeeded", "Failed"


@dataclass(frozen=True)
class JobState:
    phase: str  # Active | Succeeded | Failed
    reason: str | None = None
    message: str | None = None


def job_state(job: dict[str, Any]) -> JobState:
    """Terminal only once the Job controller says Complete or Failed (not at SuccessCriteriaMet/FailureTarget)."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return JobState(SUCCEEDED, c.get("reason"), c.get("message"))
        if c.get("type") == "Failed":
            return JobState(FAILED, c.get("reason") or "Failed", c.get("message"))
    return JobState(ACTIVE)


def job_seconds(job: dict[str, Any]) -> float:
    status = job.get("status") or {}
    start, end = status.get("startTime"), status.get("completionTime")
    if not end:
        end = next((c.get("lastTransitionTime") for c in status.get("conditions") or [] if c.get("type") in ("Complete", "Failed")), None)
    if not start or not end:
        return 0.0
    return max(0.0, (_parse_time(end) - _parse_time(start)).total_seconds())


def job_age(job: dict[str, Any]) -> float:
    """Seconds since the Job started (status.startTime: its admission, for a Job Kueue held suspended), else since it
    was created (0 when the API server has not stamped it): time spent queued never makes a Job look stuck."""
    since = (job.get("status") or {}).get("startTime") or job["metadata"].get("creationTimestamp")
    if not since:
        return 0.0
    return (datetime.datetime.now(datetime.timezone.utc) - _parse_time(since)).total_seconds()


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def termination_message(pods: list[dict[str, Any]], container: str) -> str | None:
    """What `container` wrote when it last ended (its termination message, or its log tail on error)."""
    newest: tuple[str, str] | None = None
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for status in statuses:
            if status.get("name") != container:
                continue
            for state in (status.get("state") or {}, status.get("lastState") or {}):
                terminated = state.get("terminated")
                if terminated and terminated.get("message") is not None:
                    stamp = terminated.get("finishedAt") or ""
                    if newest is None or stamp > newest[0]:
                        newest = (stamp, terminated["message"])
    return newest[1] if newest else None


def cause(message: str | None) -> str:
    """A container's last words as one line: a Python traceback's final line (the exception, which names the
    cause) rather than its first characters; any other message with its whitespace folded."""
    text = (message or "").strip()
    if "Traceback (most recent call last)" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else text
    return " ".join(text.split())


# Waiting reasons after which a container never starts without someone fixing its inputs.
_STUCK_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError")


def stuck_reason(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why a Job's pod cannot start (the scheduler's Unschedulable, an image pull that fails, a config
    that does not exist) as (reason, message); a Job that waits on that would never finish."""
    for pod in pods:
        status = pod.get("status") or {}
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
                return "Unschedulable", f"pod {pod['metadata']['name']} cannot be scheduled: {c.get('message') or 'no reason given'}"
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _STUCK_WAITING:
                return waiting["reason"], (f"container {container.get('name')} of pod {pod['metadata']['name']} cannot start "
                                           f"({waiting['reason']}): {waiting.get('message') or 'no message'}")
    return None


def pod_selector(job_name: str) -> str:
    return f"batch.kubernetes.io/job-name={job_name}"
