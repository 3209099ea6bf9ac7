"""Headless Chromium for the tests, driven over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` makes Chromium read commands from file descriptor 3 and write
answers and events to 4, each a JSON object ended by a NUL byte: no websocket, no port, no
extra package. :func:`open_page` loads a file and returns what a reader would have met: console
messages and uncaught exceptions, requests for anything but the page itself and ``data:`` URIs,
the result of a script run in the page, and a PNG screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # URLs other than file: and data:
    value: Any = None  # what the script returned
    screenshot: bytes = b""


class DevTools:
    """One Chromium process and its pipe; ``call`` sends a command and waits for its answer,
    keeping every event that arrives meanwhile in ``events``."""

    def __init__(self, executable: str, profile: Path, width: int, height: int):
        to_browser = os.pipe()
        from_browser = os.pipe()

        def use_pipes_as_3_and_4():
            # out of the way first: a pipe may already sit on 3 or 4
            commands = fcntl.fcntl(to_browser[0], fcntl.F_DUPFD, 10)
            answers = fcntl.fcntl(from_browser[1], fcntl.F_DUPFD, 10)
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        self.process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",  # tests run as root in containers
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=use_pipes_as_3_and_4,
        )
        os.close(to_browser[0])
        os.close(from_browser[1])
        self.writer, self.reader = to_browser[1], from_browser[0]
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params):
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive(deadline, method)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.reader], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"Chromium did not answer {waiting_for} in time")
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe while {waiting_for} was awaited")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):  # it may be gone
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.writer)
        os.close(self.reader)


def open_page(
    executable: str, page: Path, script: str, profile: Path, width: int = 1280, height: int = 2400
) -> PageVisit:
    """Load ``page``, wait for its load event, run ``script`` (an expression) in it and take a
    screenshot of the window."""
    browser = DevTools(executable, profile, width, height)
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=page.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        result = browser.call(
            "Runtime.evaluate", session, expression=script, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"the test's script failed: {result['exceptionDetails']}")
        shot = browser.call("Page.captureScreenshot", session, format="png")
        visit = PageVisit(
            value=result["result"].get("value"), screenshot=base64.b64decode(shot["data"])
        )
        for event in browser.events:
            visit.console_errors += _errors(event)
            if event.get("method") == "Network.requestWillBeSent":
                url = event["params"]["request"]["url"]
                if not url.startswith(("file:", "data:")):
                    visit.requests.append(url)
        return visit
    finally:
        browser.close()


def _errors(event: dict[str, Any]) -> list[str]:
    """The console's errors and warnings in an event: console.error/warn calls, uncaught
    exceptions, and the browser's own log entries (blocked loads, policy violations)."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in (
        "error",
        "warning",
        "assert",
    ):
        return [" ".join(str(a.get("value", a.get("description"))) for a in params["args"])]
    if method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return [f"{details.get('text')} {details.get('exception', {}).get('description', '')}"]
    if method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
        return [f"{params['entry'].get('source')}: {params['entry'].get('text')}"]
    return []
