"""The web page, driven in Debian's chromium by Playwright against a real server: upload a
photo, see its garments boxed and their shop results, browse by gallery id, search the whole
photo, and see the server's error message for a bad upload. Skips without /usr/bin/chromium."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.browser import artifact_dir, launch_browser, needs_chromium
from tests.service.conftest import detected_photo

TIMEOUT_MS = 60_000  # the machine may be busy: searches on the CPU can take a while

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator:
    yield from launch_browser()


@dataclass
class Tab:
    page: Any  # playwright.sync_api.Page
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page


@pytest.fixture
def tab(browser) -> Iterator[Tab]:
    """A fresh page that records every request and every uncaught page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    t = Tab(context.new_page())
    t.page.on("request", lambda r: t.requests.append(r.url))
    t.page.on("pageerror", lambda e: t.errors.append(str(e)))
    yield t
    context.close()


def foreign_requests(urls: list[str], server_url: str) -> list[str]:
    """The requests to anything but the server (blob: URLs of the server's origin are its own)."""
    origin = urlsplit(server_url).netloc
    out = []
    for url in urls:
        if url.startswith("data:"):
            continue
        inner = url[len("blob:") :] if url.startswith("blob:") else url
        parts = urlsplit(inner)
        if parts.scheme != "http" or parts.netloc != origin:
            out.append(url)
    return out


def rect(page, selector: str) -> dict:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    return box


def photo_scale(page) -> tuple[float, float, dict]:
    """Displayed pixels per photo pixel (x, y) of #photo, and its displayed rectangle."""
    natural = page.eval_on_selector("#photo", "im => [im.naturalWidth, im.naturalHeight]")
    shown = rect(page, "#photo")
    return shown["width"] / natural[0], shown["height"] / natural[1], shown


def assert_box_drawn(page, index: int, box: list[float], tol: float = 2.5) -> None:
    """The garment box `index` on the page is `box` (photo pixels) scaled to the photo shown."""
    sx, sy, shown = photo_scale(page)
    drawn = rect(page, f'.box[data-index="{index}"]')
    want = {
        "x": shown["x"] + box[0] * sx,
        "y": shown["y"] + box[1] * sy,
        "width": (box[2] - box[0]) * sx,
        "height": (box[3] - box[1]) * sy,
    }
    for k, v in want.items():
        assert abs(drawn[k] - v) <= tol, f"box {index} {k}: drawn {drawn[k]:.1f}, want {v:.1f}"


def assert_results_shown(page, results: list[dict]) -> None:
    """The result tiles are `results` in order, each with its similarity (3 decimals in
    [-1, 1]), and every thumbnail has loaded."""
    tiles = page.locator(".result")
    ids = [tiles.nth(i).get_attribute("data-gallery-id") for i in range(tiles.count())]
    assert ids == [r["gallery_id"] for r in results]
    for i, r in enumerate(results):
        text = tiles.nth(i).locator(".similarity").inner_text().strip()
        assert re.fullmatch(r"-?\d\.\d{3}", text), f"similarity {text!r} is not 3 decimals"
        value = float(text)
        assert -1.0 <= value <= 1.0
        assert abs(value - r["similarity"]) <= 0.0005 + 1e-9
        assert r["category"] in tiles.nth(i).inner_text()
        assert r["gallery_id"] in tiles.nth(i).inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.result img')].every(im => im.complete)"
    )
    widths = page.eval_on_selector_all(".result img", "ims => ims.map(im => im.naturalWidth)")
    assert widths and all(w > 0 for w in widths), f"thumbnails did not load: {widths}"
    srcs = page.eval_on_selector_all(".result img", "ims => ims.map(im => im.src)")
    assert [urlsplit(s).path for s in srcs] == [r["image_url"] for r in results]


def test_page_search_browse_and_whole_photo(tab, shared_server, service, published):
    page = tab.page
    photo = detected_photo(service, published)
    with shared_server.client() as c:
        want = c.post("/search?top_k=10", files={"image": (photo.name, photo.read_bytes())})
        want.raise_for_status()
        want = want.json()
    assert want["items"], "the API finds no garment on the detected photo"

    page.goto(shared_server.url + "/")
    bundle = want["bundle"]
    footer = page.locator("#bundle")
    footer.filter(has_text=f"{bundle['gallery_items']} gallery items").wait_for()
    assert bundle["profile"] in footer.inner_text()
    assert str(bundle["data_version"]) in footer.inner_text()
    assert page.locator("#detect").is_checked()
    assert page.locator("#topk").input_value() == "10"

    # Upload: every garment boxed where the API puts it, the first one selected.
    page.set_input_files("#file", str(photo))
    page.locator(".box").first.wait_for()
    page.locator(".result").first.wait_for()
    page.wait_for_function("() => document.querySelector('#photo').naturalWidth > 0")
    boxes = page.locator(".box")
    assert boxes.count() == len(want["items"]) >= 1
    assert page.locator('.box[data-index="0"]').get_attribute("class").split().count("selected")
    for i, item in enumerate(want["items"]):
        assert_box_drawn(page, i, item["box"])
        label = page.locator(f'.box[data-index="{i}"]').inner_text()
        assert item["category"] in label
    assert_results_shown(page, want["items"][0]["results"])
    assert page.locator("#photo").get_attribute("alt")

    shot = artifact_dir() / "service-page.png"
    shot.unlink(missing_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.is_file() and shot.stat().st_size > 0

    # Selecting another garment shows its own results: by its box (a button: boxes may
    # overlap, so by the keyboard), then back by its entry in the list of garments.
    if len(want["items"]) > 1:
        page.locator('.box[data-index="1"]').press("Enter")
        page.locator('.box.selected[data-index="1"]').wait_for()
        assert_results_shown(page, want["items"][1]["results"])
        page.locator('.garment[data-index="0"]').click()
        page.locator('.box.selected[data-index="0"]').wait_for()
        assert_results_shown(page, want["items"][0]["results"])

    # A result: a by-id search; its shop photo and box, and the items like it.
    first = want["items"][0]["results"][0]
    gid = first["gallery_id"]
    with page.expect_response(lambda r: f"/search/by-id/{gid}" in r.url) as answer:
        page.locator(f'.result[data-gallery-id="{gid}"] button').click()
    assert answer.value.status == 200
    by_id = answer.value.json()
    page.wait_for_function(
        "src => document.querySelector('#photo').getAttribute('src') === src",
        arg=f"/gallery/{gid}/image",
    )
    page.wait_for_function(
        "gid => document.querySelectorAll('.result').length > 0 && "
        "!document.querySelector(`.result[data-gallery-id='${gid}']`)",
        arg=gid,
    )
    page.wait_for_function("() => document.querySelector('#photo').naturalWidth > 0")
    assert page.locator(".box").count() == 1
    assert_box_drawn(page, 0, by_id["items"][0]["box"])
    assert_results_shown(page, by_id["items"][0]["results"])
    assert gid not in [r["gallery_id"] for r in by_id["items"][0]["results"]]

    # Back to the uploaded photo and its garments.
    page.locator("#back").click()
    page.wait_for_function("() => document.querySelector('#photo').src.startsWith('blob:')")
    # the boxes are drawn once the photo has loaded again
    page.wait_for_function(
        "n => document.querySelectorAll('.box').length === n", arg=len(want["items"])
    )
    assert page.locator(".box").count() == len(want["items"])

    # The same photo with detection off: one box, the whole photo.
    page.locator("#detect").uncheck()
    with page.expect_response(lambda r: "/search?" in r.url and "detect=false" in r.url) as ans:
        page.set_input_files("#file", str(photo))
    assert ans.value.status == 200
    page.wait_for_function("() => document.querySelectorAll('.box').length === 1")
    page.locator(".result").first.wait_for()
    drawn, shown = rect(page, ".box"), rect(page, "#photo")
    for k in ("x", "y", "width", "height"):
        assert abs(drawn[k] - shown[k]) <= 2.5, f"whole-photo box {k}: {drawn} vs {shown}"
    whole = ans.value.json()["items"][0]
    assert_results_shown(page, whole["results"])

    assert not tab.errors, f"the page threw: {tab.errors}"
    assert not foreign_requests(tab.requests, shared_server.url), "a request left the server"
    assert any("/static/app.js" in u for u in tab.requests)


def undetected_photo(service) -> bytes:
    """A plain photo on which the tiny detectors find nothing (they find "garments" on a
    grey or noisy one at their score threshold of 0, but not on a white one)."""
    for size, colour in (((96, 128), (255, 255, 255)), ((8, 8), (128, 128, 128))):
        buf = io.BytesIO()
        Image.new("RGB", size, colour).save(buf, format="PNG")
        if not service.search(buf.getvalue(), top_k=1).items:
            return buf.getvalue()
    pytest.skip("the tiny detectors find a garment on every plain photo tried")


def test_page_whole_photo_button(tab, shared_server, service, tmp_path):
    """Nothing detected: the reason and a button that searches the whole photo."""
    page = tab.page
    data = undetected_photo(service)
    photo = tmp_path / "blank.png"
    photo.write_bytes(data)
    page.goto(shared_server.url + "/")
    page.set_input_files("#file", str(photo))
    button = page.locator("#whole-photo")
    button.wait_for(state="visible")
    assert "no garment detected" in page.locator("#reason").inner_text()
    assert page.locator(".box").count() == 0
    with page.expect_response(lambda r: "detect=false" in r.url) as ans:
        button.click()
    assert ans.value.status == 200
    page.wait_for_function("() => document.querySelectorAll('.box').length === 1")
    page.locator(".result").first.wait_for()
    assert button.is_hidden()
    drawn, shown = rect(page, ".box"), rect(page, "#photo")
    for k in ("x", "y", "width", "height"):
        assert abs(drawn[k] - shown[k]) <= 2.5, f"whole-photo box {k}: {drawn} vs {shown}"
    assert not tab.errors, f"the page threw: {tab.errors}"
    assert not foreign_requests(tab.requests, shared_server.url)


def test_page_shows_the_servers_error(tab, shared_server, tmp_path):
    """A text file: the server's message in #status, and the page still works."""
    page = tab.page
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo\n")
    with shared_server.client() as c:
        r = c.post("/search", files={"image": (notes.name, notes.read_bytes(), "text/plain")})
    assert r.status_code == 415
    message = r.json()["error"]["message"]

    page.goto(shared_server.url + "/")
    with page.expect_response(lambda r: "/search?" in r.url) as ans:
        page.set_input_files("#file", str(notes))
    assert ans.value.status == 415
    status = page.locator("#status")
    status.filter(has_text=message).wait_for()
    assert "error" in status.get_attribute("class").split()
    assert status.is_visible()
    assert page.locator(".box").count() == 0
    assert page.locator("#file").is_enabled()
    assert not tab.errors, f"the page threw: {tab.errors}"
    assert not foreign_requests(tab.requests, shared_server.url)
