"""Open a page in headless Chromium over the DevTools protocol: console errors, exceptions and broken images.

Chromium comes from hack/install_test_tools.sh (Debian's `chromium`); the client is `websocket-client`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--remote-debugging-port=0",
)
STARTUP_SECONDS = 60

IMAGES_JS = """
Promise.all([...document.images].map((img, i) => img.decode().then(
  () => ({index: i, alt: img.alt, ok: img.naturalWidth > 0 && img.naturalHeight > 0, width: img.naturalWidth}),
  () => ({index: i, alt: img.alt, ok: false, width: 0}))))
"""


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["ok"]]


def require_chromium() -> str:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        raise AssertionError(f"{CHROMIUM} is missing: run hack/install_test_tools.sh (or set CHROMIUM=/path/to/chromium)")
    return CHROMIUM


def check_page(page: Path, timeout: float = 60.0) -> PageCheck:
    """Load a local HTML file in a fresh headless Chromium and report what a user's browser would show wrong."""
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="evomerge-chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            port = _devtools_port(Path(profile), process)
            return _inspect(port, Path(page).resolve().as_uri(), timeout)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """End the browser and its helpers: they share the session (and process group) it was started in."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _devtools_port(profile: Path, process: subprocess.Popen) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"chromium exited with {process.returncode} before opening its DevTools port")
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.05)
    raise AssertionError(f"chromium did not open a DevTools port within {STARTUP_SECONDS}s")


def _inspect(port: int, url: str, timeout: float) -> PageCheck:
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
    page = next(t for t in targets if t["type"] == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
    client = _Client(ws)
    try:
        for domain in ("Runtime", "Log", "Page"):
            client.call(f"{domain}.enable")
        client.call("Page.navigate", {"url": url})
        client.wait_for("Page.loadEventFired", timeout)
        images = client.call("Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True, "returnByValue": True})
        title = client.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True})
        client.drain(0.3)  # late console messages of the load
        return PageCheck(client.errors, images["result"]["value"], title["result"]["value"])
    finally:
        ws.close()


class _Client:
    """Just enough of the DevTools protocol: numbered calls, and console / exception events collected."""

    def __init__(self, ws: websocket.WebSocket):
        self.ws = ws
        self.next_id = 0
        self.errors: list[str] = []
        self.seen: set[str] = set()

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        while True:
            message = self._receive()
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"DevTools {method}: {message['error']}")
                return message["result"]

    def wait_for(self, event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event} within {timeout}s")
            self._receive()

    def drain(self, seconds: float) -> None:
        self.ws.settimeout(seconds)
        try:
            while True:
                self._receive()
        except websocket.WebSocketTimeoutException:
            pass

    def _receive(self) -> dict[str, Any]:
        message = json.loads(self.ws.recv())
        method = message.get("method")
        if method:
            self.seen.add(method)
            params = message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                self.errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.errors.append(f"log: {params['entry']['text']}")
        return message
