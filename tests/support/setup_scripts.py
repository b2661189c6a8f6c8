"""The project's setup scripts (hack/*/build.sh) run from a session fixture: a cold run takes minutes, so its
progress (stderr) is shown live rather than captured; a failure fails the tests that need what it builds, with
the script's last lines — never a skip."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest


def run_setup_script(request: pytest.FixtureRequest, script: Path, *args: str) -> str:
    """`bash script args…`; its stdout (the scripts print what they built there)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    last_lines: collections.deque[str] = collections.deque(maxlen=60)
    with capture.global_and_fixture_disabled():
        run = subprocess.Popen(["bash", str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in run.stderr:
            sys.stderr.write(line)
            last_lines.append(line.rstrip("\n"))
        stdout = run.stdout.read()
        returncode = run.wait()
    if returncode != 0:
        tail = "\n".join(last_lines)
        pytest.fail(f"{script} {' '.join(args)} failed with exit code {returncode}:\n{tail}", pytrace=False)
    return stdout
