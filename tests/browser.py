"""A markdown artifact as a user sees it: opened in both Prefect UIs by a headless Chromium, 1280 px wide.

Chromium is Debian's package (`install_chromium`), driven by Playwright through
its own executable, so Playwright downloads no browser. `check_artifact` opens
the artifact's page in the v1 UI (`/artifacts/artifact/<id>`) and the v2 UI
(`/v2/artifacts/artifact/<id>`), waits for the markdown to render and its
images to settle, and names what a reader would miss: an image that did not
load, a table wider than the text column (cut off, or pushed under the side panel).
Playwright is imported only when a browser starts: the fast tier needs none of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 900  # px: a laptop screen
#: the artifact page of each UI, relative to the server's root
UIS = {"v1": "/artifacts/artifact/{id}", "v2": "/v2/artifacts/artifact/{id}"}
#: the element each UI renders the markdown into: the text column
MARKDOWN = ".artifact-data-markdown, [data-testid='markdown-display']"
RENDER_S = 30.0  # seconds a page has to fetch the artifact and render it


def install_chromium() -> str | None:
    """Debian's `chromium` at /usr/bin/chromium, apt-get installed where missing; None, or why it cannot be."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return f"no {CHROMIUM}, and no apt-get to install Debian's chromium package"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and (shutil.which("sudo") is None or subprocess.run([*sudo, "true"], capture_output=True).returncode):
        return f"no {CHROMIUM}, and neither root nor passwordless sudo to `apt-get install chromium`"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        done = subprocess.run([*sudo, *cmd], capture_output=True, text=True, env=env)
        if done.returncode:
            return f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()[-400:]}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium, but there is no {CHROMIUM}"


class Chromium:
    """One headless Chromium (Debian's) and one page WIDTH px wide, reused for every artifact checked.

    It lives in a thread of its own, and every use goes through `run`: Playwright's
    sync API leaves its event loop marked running in the thread that starts it, and
    Prefect, seeing a running loop in the tests' thread, would take itself to be in async code.
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="chromium")
        self._pw, self._browser, self._page = self._thread.submit(self._start).result()

    @staticmethod
    def _start():
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=str(CHROMIUM))
        return pw, browser, browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})

    def run(self, fn: Callable[..., T], *args) -> T:
        """fn(page, *args) in the browser's thread."""
        return self._thread.submit(fn, self._page, *args).result()

    def close(self) -> None:
        self._thread.submit(lambda: (self._browser.close(), self._pw.stop())).result()
        self._thread.shutdown()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Problem:
    ui: str  # "v1" or "v2"
    kind: str  # "image" (did not load), "table" (overflows its column) or "render" (no markdown shown)
    what: str  # the image's src, or "table N (C columns)"
    detail: str
    shot: Path | None = None  # the page's screenshot

    def __str__(self) -> str:
        return f"{self.ui} {self.kind} {self.what}: {self.detail}" + (f" (screenshot: {self.shot})" if self.shot else "")


#: (root) -> what the text column holds: its width and right edge (px), images not loaded, tables and their extent
_MEASURE = """root => {
  const column = root.getBoundingClientRect();
  const cut = s => s.length > 80 ? s.slice(0, 77) + '...' : s;
  return {
    width: root.clientWidth, right: column.right,
    images: [...root.querySelectorAll('img')].filter(i => i.naturalWidth === 0)
      .map(i => ({src: cut(i.getAttribute('src') || ''), alt: i.alt})),
    tables: [...root.querySelectorAll('table')].map(t => ({
      columns: t.rows.length ? t.rows[0].cells.length : 0,
      width: Math.max(t.scrollWidth, t.getBoundingClientRect().width), right: t.getBoundingClientRect().right,
      header: cut(t.rows.length ? [...t.rows[0].cells].map(c => c.innerText.trim()).join(' | ') : ''),
    })),
  };
}"""

#: (selector) -> whether the markdown shows, and each of its images has loaded or failed; lazy images are told
#: to load now (they may be below the fold)
_SETTLED = """selector => {
  const root = document.querySelector(selector);
  return !!root && root.childElementCount > 0 && root.clientWidth > 0
    && [...root.querySelectorAll('img')].every(i => { i.loading = 'eager'; return i.complete; });
}"""


def check_artifact(ui_base: str, artifact_id, chromium: Chromium, shots: Path) -> list[Problem]:
    """What a reader of markdown artifact `artifact_id` misses in each UI of the server at `ui_base`.

    Args:
        ui_base: the server's root, e.g. http://127.0.0.1:4200 (its API is under /api).
        chromium: the browser that looks.
        shots: where a page with a problem is saved as <artifact_id>-<ui>.png.
    Returns:
        every image whose naturalWidth is 0, every table wider than the text column (or reaching past its
        right edge), in page order, v1 first; a page that renders no markdown in RENDER_S is one problem.
    """
    return chromium.run(_check, ui_base, artifact_id, shots)


def _check(page, ui_base: str, artifact_id, shots: Path) -> list[Problem]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    problems = []
    for ui, route in UIS.items():
        # networkidle: the artifact fetched; `_steady` waits out the side panel, which narrows the column later
        page.goto(ui_base.rstrip("/") + route.format(id=artifact_id), wait_until="networkidle")
        try:
            page.wait_for_function(_SETTLED, arg=MARKDOWN, timeout=RENDER_S * 1000)
            found = _problems(ui, _steady(page))
        except PlaywrightTimeout as e:
            found = [Problem(ui, "render", page.url, f"no rendered markdown with settled images: {e.message}")]
        if found:
            shots.mkdir(parents=True, exist_ok=True)
            shot = shots / f"{artifact_id}-{ui}.png"
            _screenshot(page, shot)
            problems += [Problem(p.ui, p.kind, p.what, p.detail, shot) for p in found]
    return problems


def _screenshot(page, path: Path) -> None:
    """The whole page, the markdown's full height included: the v1 UI scrolls it inside the page, so the window
    is made as tall as the markdown for the shot (its width, and so the layout, stays)."""
    bottom = page.evaluate(f"() => Math.max(...[...document.querySelectorAll(`{MARKDOWN}`)]"
                           ".map(e => e.getBoundingClientRect().bottom), 0)")
    page.set_viewport_size({"width": WIDTH, "height": max(HEIGHT, int(bottom) + 100)})
    try:
        page.screenshot(path=path, full_page=True)
    finally:
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})


def _steady(page, every_ms: int = 1000) -> dict:
    """`_MEASURE` of the text column once two looks `every_ms` apart agree: side panels load after the markdown
    and narrow the column."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    seen, deadline = None, time.monotonic() + RENDER_S
    while time.monotonic() < deadline:
        now = page.locator(MARKDOWN).first.evaluate(_MEASURE)  # found anew at each look: React replaces it
        if now == seen:
            return now
        seen = now
        page.wait_for_timeout(every_ms)
    raise PlaywrightTimeout(f"the text column still changed after {RENDER_S:.0f} s: {seen}")


def _problems(ui: str, seen: dict) -> list[Problem]:
    out = [Problem(ui, "image", i["src"], f"not loaded (alt text {i['alt']!r})") for i in seen["images"]]
    for n, t in enumerate(seen["tables"], 1):
        if t["width"] > seen["width"] + 1 or t["right"] > seen["right"] + 1:  # 1 px: subpixel rounding
            out.append(Problem(ui, "table", f"table {n} ({t['columns']} columns)",
                               f"{t['width']:.0f} px wide in a {seen['width']} px column at {WIDTH} px "
                               f"(header: {t['header']})"))
    return out
