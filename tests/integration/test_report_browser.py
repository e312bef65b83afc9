"""The HTML report in a REAL headless Chromium (Debian's ``chromium``, installed by ``scripts/setup.sh test``).

A real llm-sim sweep (with the server's timeline) and the invalid IO500 fixture run are reported with
``report --html``; the browser then

* dumps the DOM after load (``--dump-dom``): every section is there, and the page's own inline check says every
  image decoded with a non-zero size (``<body data-images-ok="yes" data-images="N">``);
* takes a screenshot (``--screenshot``): a PNG of the window's size, not blank;
* loads the page under the DevTools protocol with the Network domain on: every request the page made is a
  ``file:`` or ``data:`` URL -- nothing left the file. A canary page with one external image proves the log
  does see an outside request. (Chromium's own background traffic is not the page's: it is not in the page's
  Network log, which is why that log is used rather than a proxy.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchctl.app import App
from benchctl.config import load_settings
from benchctl.llmsim import SimConfig, running
from tests.conftest import string_ui
from tests.test_report import io500_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# No name resolves (an external reference cannot reach anything even if one slipped through); no updates,
# sync or first-run work in the throw-away profile.
QUIET = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-sync", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
SECTIONS = ("top", "facts", "analysis", "tables", "plots", "config")


@pytest.fixture(scope="module")
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("BENCHCTL_REQUIRE_SLURM") == "1":  # scripts/test.sh: the full suite must not skip
            pytest.fail("chromium is not installed (scripts/setup.sh test installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def browse(chromium: str, profile: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium, *QUIET, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def llm_report(tmp_path: Path) -> Path:
    """report.html of a real sweep against llm-sim (server timeline sampled), written by the `report` command."""
    ui, buf = string_ui()
    app = App(settings=load_settings(executor="local", profile="local"), ui=ui)
    with running(SimConfig(ttft_ms=10, itl_ms=2, output_tokens=16, max_concurrency=2)) as sim:
        assert app.run_line(f"bench llm --url {sim.url} --model sim --concurrency 1,2,4,8 --duration 1 "
                            "--output-tokens 16 --server-metrics-interval 0.1"), buf.getvalue()
    assert app.run_line("report last --html"), buf.getvalue()
    path = Path(buf.getvalue().split("HTML report: ", 1)[1].split()[0])
    assert path.is_file()
    return path


def body_attributes(dom: str) -> dict[str, str]:
    match = re.search(r"<body([^>]*)>", dom)
    assert match, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))


def test_every_section_and_image_renders(chromium: str, llm_report: Path, tmp_path: Path) -> None:
    proc = browse(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", llm_report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = body_attributes(proc.stdout)
    pngs = sorted(p.name for p in llm_report.parent.glob("*.png"))
    assert len(pngs) == 4
    assert body.get("data-images-ok") == "yes" and body.get("data-images") == str(len(pngs)), body
    for section in SECTIONS:
        assert f'id="{section}"' in proc.stdout, section
    for name in ("sweep", "latency_percentiles", "latency_cdf", "timeline"):
        assert f'id="plot-{name}"' in proc.stdout
    assert "<b>knee</b>:" in proc.stdout and "<b>saturation</b>:" in proc.stdout


def test_screenshot_is_a_real_picture(chromium: str, llm_report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    proc = browse(chromium, tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={shot}",
                  "--virtual-time-budget=5000", llm_report.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1280, 2400)
    assert len(data) > 100_000  # a blank 1280x2400 page compresses to a few KB; plots and tables do not


def test_an_invalid_io500_report_renders_too(chromium: str, app: App, tmp_path: Path) -> None:
    io500_run(app.home, "invalid-run")
    assert app.run_line("report last --html")
    page = app.home / "results"
    html = next(page.glob("*/report/report.html"))
    proc = browse(chromium, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", html.as_uri())
    body = body_attributes(proc.stdout)
    assert body.get("data-images-ok") == "yes" and body.get("data-images") == "1"
    assert 'class="flagged"' in proc.stdout and "INVALID" in proc.stdout


# ---- what the page requests, from the DevTools protocol -----------------------------------------------
async def page_requests(chromium: str, profile: Path, url: str) -> list[str]:
    """Every URL the page at ``url`` requested until its load event (+ a moment for late requests)."""
    import aiohttp

    proc = await asyncio.create_subprocess_exec(chromium, *QUIET, f"--user-data-dir={profile}",
                                                "--remote-debugging-port=0", "about:blank",
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        while True:  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "chromium exited before opening DevTools"
            if match := re.search(r"ws://127\.0\.0\.1:(\d+)/", line):
                port = match.group(1)
                break
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                page = next(t for t in await resp.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                seen: list[str] = []
                loaded: list[float] = []
                ids = iter(range(1, 1000))
                loop = asyncio.get_running_loop()

                def note(event: dict[str, Any]) -> None:
                    if event.get("method") == "Network.requestWillBeSent":
                        seen.append(event["params"]["request"]["url"])
                    elif event.get("method") == "Page.loadEventFired" and not loaded:
                        loaded.append(loop.time())

                async def call(method: str, **params: Any) -> None:
                    """Send a command and wait for its answer (events meanwhile are noted): the Network
                    domain must be on before the navigation starts, or the first requests go unseen."""
                    mine = next(ids)
                    await ws.send_str(json.dumps({"id": mine, "method": method, "params": params}))
                    while True:
                        event = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
                        if event.get("id") == mine:
                            return
                        note(event)

                await call("Network.enable")
                await call("Page.enable")
                await call("Page.navigate", url=url)
                # Until a second after the load event: late requests (a script's fetch) are seen too.
                while not loaded or loop.time() - loaded[0] < 1.0:
                    try:
                        note(json.loads((await asyncio.wait_for(ws.receive(), 1.0)).data))
                    except asyncio.TimeoutError:
                        continue
                return seen
    finally:
        proc.kill()
        await proc.wait()


def test_no_request_leaves_the_file(chromium: str, llm_report: Path, tmp_path: Path) -> None:
    html = llm_report.read_text()
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "url(" not in html and "@import" not in html
    urls = asyncio.run(page_requests(chromium, tmp_path / "profile", llm_report.as_uri()))
    assert urls and urls[0] == llm_report.as_uri()
    assert {u.split(":", 1)[0] for u in urls} <= {"file", "data"}, [u[:80] for u in urls]
    assert sum(u.startswith("data:image/png;base64,") for u in urls) == 4  # the log does see the page's images
    # The control: the same log catches an outside request when a page makes one.
    canary = tmp_path / "canary.html"
    canary.write_text('<!DOCTYPE html><html><body><img alt="x" loading="eager" src="http://report-canary.test/x.png">'
                      '</body></html>')
    urls = asyncio.run(page_requests(chromium, tmp_path / "profile2", canary.as_uri()))
    assert "http://report-canary.test/x.png" in urls
