"""The HTML report in a real headless browser (Debian's chromium): every image loads, no console error, a screenshot.

The browser is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and
4, NUL-separated JSON messages), so the check needs no Python package beyond the standard library. Without a
chromium on the machine the tests skip. ``MONGE_REPORT=path/to/index.html`` checks that report (CI runs
``make demo`` and checks the full report); otherwise a small report is written from two fast sections.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--remote-debugging-pipe", "--window-size=1100,1400"]


def _browser() -> str | None:
    return next((p for p in map(shutil.which, _BROWSERS) if p), None)


class _DevTools:
    """A minimal CDP client over the browser's debugging pipe: ``call`` waits for its reply, keeping events."""

    def __init__(self, exe: str, profile: Path):
        to_chrome, self._w = os.pipe()
        self._r, from_chrome = os.pipe()

        def fds():  # the protocol's descriptors: the browser reads commands on 3 and writes replies on 4
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen([exe, *_FLAGS, f"--user-data-dir={profile}", "about:blank"], preexec_fn=fds,
                                     close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id, self.events = b"", 0, []

    def call(self, method: str, session: str | None = None, timeout: float = 60.0, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, name: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == name for e in self.events):
            self.events.append(self._next(deadline))
        return next(e for e in self.events if e.get("method") == name)

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError("no answer from the browser")
            self._buf += os.read(self._r, 1 << 20)
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        finally:
            self.proc.kill() if self.proc.poll() is None else None
            self.proc.wait(timeout=10)
            os.close(self._w)
            os.close(self._r)


def check_page(page: Path, screenshot: Path, profile: Path) -> dict:
    """Load ``page``; return its images ``[(src, loaded)]``, console/exception errors and the screenshot's size."""
    exe = _browser()
    tools = _DevTools(exe, profile)
    try:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        s = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable", session=s)
        tools.call("Page.navigate", session=s, url=page.resolve().as_uri())
        tools.wait_event("Page.loadEventFired", timeout=120)
        js = "JSON.stringify([...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]))"
        value = tools.call("Runtime.evaluate", session=s, expression=js, returnByValue=True)["result"]["value"]
        shot = tools.call("Page.captureScreenshot", session=s, format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = [e for e in tools.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
        return {"images": json.loads(value), "errors": errors, "screenshot": screenshot.stat().st_size}
    finally:
        tools.close()


needs_browser = pytest.mark.skipif(_browser() is None, reason="no chromium on this machine (Debian: apt install chromium)")


def _small_report(out: Path) -> Path:
    pytest.importorskip("matplotlib")
    from monge.cli.demo import section_entropic, section_matching
    from monge.cli.report import write_report

    out.mkdir(parents=True)
    return write_report([section_matching(out), section_entropic(out)], out, title="browser check")


@needs_browser
def test_report_loads_in_a_headless_browser(tmp_path):
    page = Path(os.environ["MONGE_REPORT"]) if os.environ.get("MONGE_REPORT") else _small_report(tmp_path / "r")
    got = check_page(page, tmp_path / "report.png", tmp_path / "profile")
    broken = [src for src, ok in got["images"] if not ok]
    assert got["images"] and not broken, f"images that did not load: {broken}"
    assert not got["errors"], f"console errors: {got['errors'][:3]}"
    assert got["screenshot"] > 10_000  # a real rendering, not an empty page


@needs_browser
def test_the_check_sees_a_missing_image_and_a_script_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><img src="missing.png"><script>undefined_function()</script>', encoding="utf-8")
    got = check_page(page, tmp_path / "bad.png", tmp_path / "profile")
    assert got["images"] == [["missing.png", False]]
    assert got["errors"]
