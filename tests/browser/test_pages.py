"""The built site in a real browser (headless Chromium, Debian's package, driven by Playwright).

``make test`` builds the site as it is published (``jupyter-book build . -W``, nothing executed) and runs these
checks on every page at a desktop (1280 x 800) and a phone (390 x 844) viewport:

* page one's status line lies in the first screen;
* no JavaScript error, besides requests to other hosts, which are blocked (the site must work offline);
* every image loads;
* nothing scrolls sideways but code blocks and the tables marked as scrolling (``plinknet-scrolls``: a line above
  such a table says so): the page itself never;
* the claims ledger (chapter 7) fits the width of the page;
* every figure's smallest text is 9 CSS px at least on the phone: the size that ``glue_figure`` wrote into the
  image's metadata, scaled by how wide the page shows the image (``-s`` prints a table of them at both viewports,
  also written to ``figure-text.md`` in pytest's temporary folder).

Chromium is looked up as ``$CHROMIUM``, else ``chromium``; ``.ci/run`` installs it when it is missing.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
PAGES = sorted(p.name for p in (SITE / "book").glob("*.html")) if (SITE / "book").is_dir() else []

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site():
    """The built site served over HTTP on a free local port (file:// would block the site's own requests)."""
    if not PAGES:
        pytest.fail(f"no built site in {SITE}: make test builds it first (jupyter-book build . -W)")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("no Chromium: install Debian's chromium package (apt install chromium) or set $CHROMIUM")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


OVERFLOWING = """() => {
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const style = getComputedStyle(el);
    if (!['auto', 'scroll'].includes(style.overflowX) || el.scrollWidth <= el.clientWidth + 1) continue;
    if (el.closest('pre, .highlight, .plinknet-scrolls, mjx-container')) continue;  // allowed to
    if (el.getBoundingClientRect().width === 0) continue;  // hidden (a closed dropdown, the side bars)
    out.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} (${el.scrollWidth} > ${el.clientWidth})`);
  }
  return out;
}"""

BROKEN_IMAGES = """() => [...document.images].filter(i => i.getBoundingClientRect().width > 0 || i.loading !== 'lazy')
  .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src)"""


FIGURES = """() => [...document.querySelectorAll('.bd-article figure img')].map(i => {
  const figure = i.closest('figure');
  const number = figure.querySelector('.caption-number');
  return {src: new URL(i.currentSrc || i.src).pathname, shown: i.getBoundingClientRect().width,
          natural: i.naturalWidth, figure: number ? `${number.textContent.trim()} (${figure.id})` : figure.id};
})"""


@contextlib.contextmanager
def _page(browser, site: str, page_name: str, viewport: str):
    """The page opened at ``viewport``, other hosts blocked, with the errors it logged; closed after the block."""
    width, height = VIEWPORTS[viewport]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    local = site + "/"

    blocked: list[str] = []

    def route(route):  # the site must work offline: other hosts are blocked, and that is no error of the site's
        if route.request.url.startswith(local):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def uncaught(error) -> None:  # a script that another host would have served is missing: its names are undefined
        if not (blocked and "is not defined" in str(error)):
            errors.append(f"uncaught: {error}")

    page.route("**/*", route)
    page.on("pageerror", uncaught)
    page.on("console", lambda message: errors.append(f"console: {message.text} ({message.location.get('url')})")
            if message.type == "error" and "net::ERR_FAILED" not in message.text else None)  # fmt: skip
    page.on("requestfailed", lambda request: errors.append(f"failed request: {request.url}")
            if request.url.startswith(local) else None)  # fmt: skip
    page.goto(f"{site}/book/{page_name}", wait_until="load")
    page.evaluate("() => Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
    try:
        yield page, errors
    finally:
        context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("page_name", PAGES)
def test_every_page_loads_whole_and_fits(browser, site, page_name, viewport):
    with _page(browser, site, page_name, viewport) as (page, errors):
        assert errors == [], errors
        assert page.evaluate(BROKEN_IMAGES) == []
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= VIEWPORTS[viewport][0], f"the page scrolls sideways: {width} px wide"
        assert page.evaluate(OVERFLOWING) == []


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_status_line_is_in_page_ones_first_screen(browser, site, viewport):
    with _page(browser, site, "intro.html", viewport) as (page, _):
        status = page.locator("article p", has_text="On Inria at paper scale").first
        assert status.inner_text().startswith("Status.")
        box = status.bounding_box()  # its first line at least, in the first screen
        assert box is not None and box["y"] + 24 < VIEWPORTS[viewport][1], f"status line at {box}"
        print(f"{viewport}: the status line starts {box['y']:.0f} px down")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_claims_ledger_fits(browser, site, viewport):
    with _page(browser, site, "07_conclusion.html", viewport) as (page, _):
        ledger = page.locator("table", has_text="this book measured").first
        table, frame = ledger.evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
        assert table <= frame + 1, f"the ledger is {table} px wide in {frame} px"


@pytest.fixture(scope="module")
def figure_text(tmp_path_factory):
    """``{(page, figure): {viewport: smallest text in CSS px}}``, filled by the figure check; a table after it."""
    sizes: dict = {}
    yield sizes
    if sizes:
        def cell(at, viewport):
            if viewport not in at:
                return "-"
            return "no text" if at[viewport] == float("inf") else f"{at[viewport]:.1f}"

        lines = ["| page | figure | smallest text at 390 px (CSS px) | at 1280 px |", "|---|---|---|---|"]
        lines += [f"| {page} | {figure} | {cell(at, 'phone')} | {cell(at, 'desktop')} |"
                  for (page, figure), at in sorted(sizes.items())]  # fmt: skip
        path = tmp_path_factory.getbasetemp() / "figure-text.md"
        path.write_text("\n".join(lines) + "\n")
        print(f"\nEach figure's smallest text ({path}):\n" + "\n".join(lines))


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("page_name", PAGES)
def test_every_figure_is_legible_on_a_phone(browser, site, page_name, viewport, figure_text):
    from plinknet_book.context import LEGIBLE_CSS_PX as LEGIBLE
    from plinknet_book.context import read_smallest_text_px

    with _page(browser, site, page_name, viewport) as (page, _):
        figures = page.evaluate(FIGURES)
    if page_name not in ("06_protocol.html", "07_conclusion.html"):  # the pages that draw figures: a check that
        assert figures, f"{page_name}: no figure found; has the page's markup changed?"  # finds none fails
    problems = []
    for figure in figures:
        path = SITE / unquote(figure["src"]).lstrip("/")
        smallest = read_smallest_text_px(path)
        if smallest is None:
            problems.append(f"{figure['figure']}: {path.name} carries no smallest-text size; glue it with "
                            "plinknet_book.context.glue_figure and execute the notebook again")  # fmt: skip
        elif figure["natural"] == 0:
            problems.append(f"{figure['figure']}: {path.name} did not load")
        elif figure["shown"] > 0:  # not hidden (a closed dropdown)
            size = smallest * figure["shown"] / figure["natural"]
            figure_text[(page_name, figure["figure"])] = {**figure_text.get((page_name, figure["figure"]), {}),
                                                          viewport: size}  # fmt: skip
            if viewport == "phone" and size < LEGIBLE:
                problems.append(f"{figure['figure']}: smallest text {size:.1f} CSS px at {VIEWPORTS[viewport][0]} px "
                                f"wide, under {LEGIBLE}: draw it narrower or with larger text")  # fmt: skip
    assert not problems, f"{page_name}: " + "; ".join(problems)
