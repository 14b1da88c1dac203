"""The HTML report in a real headless Chromium, driven over the DevTools protocol.

Checks: the page renders (every figure decoded), no console error, no network request other
than the file itself and its data: images, the findings table lists the expected codes, and a
screenshot is saved. Two controls show the monitor does catch a request and a CSP violation.
Skipped only when no chromium binary is installed (CI installs Debian's ``chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

import graddoctor as gd
from graddoctor.present import html as html
from graddoctor.report import Finding, Report
from runfixtures import record_run, tiny_model

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1200,1600"]


class _WebSocket:
    """The smallest client the DevTools protocol needs (RFC 6455 text frames, client-masked)."""

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n")[0], head[:80]
        self.buf = bytearray(rest)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("DevTools socket closed")
        self.buf += chunk

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send(self, obj: dict) -> None:
        data = json.dumps(obj).encode()
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 1 << 16 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> dict:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            n = struct.unpack(">H", self._read(2))[0] if n == 126 else struct.unpack(">Q", self._read(8))[0] if n == 127 else n
            payload = self._read(n)
            if b0 & 0x0F == 8:
                raise ConnectionError("DevTools socket closed")
            if b0 & 0x0F in (9, 10):  # ping / pong
                continue
            message += payload
            if b0 & 0x80:
                return json.loads(message)


class Browser:
    """A headless Chromium with a fresh profile; ``open(path)`` loads a page and records what it did."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        while True:  # the first tab may register a moment after the endpoint
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                page = next((t for t in json.load(r) if t["type"] == "page"), None)
            if page is not None:
                break
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium opened no page target")
            time.sleep(0.1)
        self.ws = _WebSocket(page["webSocketDebuggerUrl"])
        self.events: list[dict] = []
        self._id = 0
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send({"id": self._id, "method": method, "params": params})
        while True:
            msg = self.ws.recv()
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def open(self, path: Path, timeout: float = 60) -> None:
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.monotonic() < deadline, "page did not finish loading"
            self.events.append(self.ws.recv())
        self.eval("1")  # drain what was queued behind the load event

    def eval(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def console_problems(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
        return out

    def requests(self, page: Path) -> list[str]:
        """URLs the page asked for, besides itself and data: URLs."""
        own = page.resolve().as_uri()
        urls = [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]
        return [u for u in urls if u != own and not u.startswith("data:")]

    def screenshot(self, path: Path) -> Path:
        height = self.eval("document.documentElement.scrollHeight")
        self.call("Emulation.setDeviceMetricsOverride", width=1200, height=min(int(height), 6000),
                  deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.sock.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    meta, steps = record_run(frozen=("2",), nan_at=10, n_steps=16)
    meta["layers"][1]["name"] = "<b>block</b>"
    for s in steps:
        s["grad_norm"]["<b>block</b>"] = s["grad_norm"].pop("2")
    check = Report([Finding("vanishing-gradient", "error", "gradient shrinks 1e6x", ["0", "<b>block</b>"],
                            {"ratio": 1e-6}, ["relu", "he-init"], step=0, reference="Hochreiter 1991"),
                    Finding("saturating-hidden-activation", "warning", "sigmoid hidden layers", ["1"])],
                   "check", {"probe": {"layers": ["0", "2"], "grad_rms": [1e-7, 1e-1]}})
    watch = Report([Finding("non-finite", "error", "NaN gradient", ["0"], step=10)], "watch",
                   {"meta": meta, "steps": steps})
    real = gd.check(tiny_model(depth=8), torch.randn(32, 8))  # a real check report, whatever it finds
    sections = {"check": check, "watch": watch, "check (real)": real}
    return html.write(tmp_path_factory.mktemp("report") / "report.html", sections), sections


def test_report_renders_without_errors_or_requests(browser, report_page):
    report_page, sections = report_page
    browser.open(report_page)
    assert browser.console_problems() == []
    assert browser.requests(report_page) == []
    codes = browser.eval("Array.from(document.querySelectorAll('#findings-table tr[data-code]'))"
                         ".map(r => r.dataset.code)")
    assert codes == [f.code for r in sections.values() for f in r.findings]
    assert {"non-finite", "vanishing-gradient", "saturating-hidden-activation"} <= set(codes)
    assert "saturating-hidden-activation" in sections["check (real)"].codes  # 7 sigmoid hidden layers
    images = browser.eval("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 8 and all(done and width > 300 for done, width in images)
    # the escaped layer name is text, not markup
    assert browser.eval("document.querySelectorAll('#findings-table b').length") == 0
    assert "<b>block</b>" in browser.eval("document.getElementById('findings-table').innerText")
    shot = browser.screenshot(report_page.with_name("report.png"))
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("GRADDOCTOR_SCREENSHOT")
    if keep:  # to look at it: GRADDOCTOR_SCREENSHOT=/tmp/report.png pytest tests/test_html_browser.py
        shutil.copy(shot, keep)


def test_controls_the_monitor_catches_a_request_and_a_csp_violation(browser, tmp_path):
    """Without these controls a silent monitor would pass the test above."""
    external = '<img src="http://127.0.0.1:9/pixel.png">'
    page = html.render(Report([], "check"), figures=False)
    blocked = tmp_path / "blocked.html"
    blocked.write_text(page.replace("</body>", external + "</body>"))
    browser.open(blocked)
    assert any("Content Security Policy" in p for p in browser.console_problems())
    open_page = tmp_path / "open.html"
    open_page.write_text(page.replace(html.CSP, "default-src *").replace("</body>", external + "</body>"))
    browser.open(open_page)
    assert browser.requests(open_page) == ["http://127.0.0.1:9/pixel.png"]
