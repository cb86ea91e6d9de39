"""The HTTP API of a real `clothes-retrieval serve` on loopback: answers, refusals (every
bad input a 4xx with a JSON error, never a 500), who may write, CORS, the OpenAPI page,
and a republished bundle picked up without a restart."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.published import Published
from tests.service.conftest import Server, copy_bundle, detected_photo


def _png(size=(48, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _error(r: httpx.Response, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()["error"]
    if code is not None:
        assert body["code"] == code, body
    assert body["message"]
    return body["message"]


def test_health_names_the_bundle(shared_server: Server, published: Published) -> None:
    from clothes_retrieval.service import read_bundle_manifest

    h = httpx.get(f"{shared_server.url}/health").json()
    m = read_bundle_manifest(published.bundle)
    assert h["status"] == "ok" and h["bundle_id"] == m["bundle_id"]
    assert h["data_version"] == m["data_version"]
    assert h["models"] == ["sample_lite0_gem", "sample_lite0_gem_mac"]
    assert h["detectors"] == ["atss", "centernet"]


def test_search_returns_boxes_and_results_with_image_urls(
    shared_server: Server, published: Published, service
) -> None:
    photo = detected_photo(service, published)
    with shared_server.client() as c:
        r = c.post("/search", files={"image": photo.read_bytes()}, params={"top_k": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        expected = service.search(photo.read_bytes(), top_k=3)
        assert len(body["items"]) == len(expected.items) > 0
        for got, want in zip(body["items"], expected.items, strict=True):
            assert got["box"] == want.box and got["category"] == want.category
            assert [x["gallery_id"] for x in got["results"]] == [x.gallery_id for x in want.results]
            assert len(got["results"]) == 3
            for res in got["results"]:
                assert set(res) == {
                    "gallery_id",
                    "image_id",
                    "box",
                    "category",
                    "similarity",
                    "image_url",
                }
                img = c.get(res["image_url"])
                assert img.status_code == 200 and img.headers["content-type"].startswith("image/")
                assert Image.open(io.BytesIO(img.content)).size[0] > 0
        assert (
            body["bundle"]["bundle_id"]
            == httpx.get(f"{shared_server.url}/health").json()["bundle_id"]
        )
        by_id = c.post(f"/search/by-id/{body['items'][0]['results'][0]['gallery_id']}")
        assert by_id.status_code == 200 and len(by_id.json()["items"][0]["results"]) == 10


def test_no_detection_is_a_200_with_the_reason(shared_server: Server) -> None:
    blank = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 255, 255)).save(blank, format="PNG")  # too small to box
    r = httpx.post(f"{shared_server.url}/search", files={"image": blank.getvalue()})
    assert r.status_code == 200
    assert r.json()["items"] == [] and "no garment detected" in r.json()["reason"]
    whole = httpx.post(
        f"{shared_server.url}/search", files={"image": blank.getvalue()}, params={"detect": False}
    )
    assert whole.json()["items"][0]["box"] == [0.0, 0.0, 4.0, 4.0]


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")
    return buf.getvalue()


def _truncated() -> bytes:
    noise = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"files": {"image": b"hello, I am text"}}, 415, "not_an_image"),
        ({"files": {"image": ("x.jpg", _truncated(), "image/jpeg")}}, 422, "corrupt_image"),
        ({"files": {"image": b""}}, 422, "empty_image"),
        ({"files": {"image": _bomb()}}, 413, "too_many_pixels"),
        ({"files": {"other": _png()}}, 422, "invalid_request"),  # missing field
        ({"content": _png(), "headers": {"content-type": "image/png"}}, 415, "wrong_content_type"),
        ({"json": {"image": "aGVsbG8="}}, 415, "wrong_content_type"),
        ({"files": {"image": _png()}, "params": {"top_k": 0}}, 422, "invalid_request"),
        ({"files": {"image": _png()}, "params": {"top_k": 101}}, 422, "invalid_request"),
        ({"files": {"image": _png()}, "params": {"top_k": "ten"}}, 422, "invalid_request"),
        ({"files": {"image": _png()}, "params": {"max_items": 99}}, 422, "invalid_request"),
        ({"files": {"image": _png()}, "params": {"detect": "maybe"}}, 422, "invalid_request"),
    ],
    ids=[
        "not-an-image",
        "truncated",
        "zero-bytes",
        "pixel-bomb",
        "missing-field",
        "raw-body",
        "json-body",
        "top_k-0",
        "top_k-101",
        "top_k-text",
        "max_items",
        "detect",
    ],
)
def test_bad_search_requests_get_a_4xx_json_error(
    shared_server: Server, kwargs, status, code
) -> None:
    _error(httpx.post(f"{shared_server.url}/search", timeout=60, **kwargs), status, code)


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(shared_server: Server) -> None:
    big = b"\xff" * (21 * 1024 * 1024)  # the default limit is 20 MiB
    msg = _error(httpx.post(f"{shared_server.url}/search", files={"image": big}, timeout=60), 413)
    assert "limit" in msg

    def chunks():  # no Content-Length: counted as it streams
        yield (
            b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        for _ in range(22):
            yield b"\0" * (1024 * 1024)

    r = httpx.post(
        f"{shared_server.url}/search",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=x"},
        timeout=60,
    )
    _error(r, 413, "upload_too_large")


@pytest.mark.parametrize(
    "path",
    [
        "/gallery/nope_1/image",
        "/gallery/..%2F..%2Fetc%2Fpasswd/image",
        "/gallery/%2e%2e/image",
        "/gallery/....%2F%2Fbundle.json/image",
        "/gallery/" + "a" * 65 + "/image",
        "/gallery/..\\..\\bundle.json/image",
        "/gallery/%00/image",
    ],
)
def test_unknown_and_path_traversing_ids_never_reach_a_file(shared_server: Server, path) -> None:
    r = httpx.get(shared_server.url + path)
    assert r.status_code in (404, 422), r.text
    assert r.headers["content-type"].startswith("application/json")
    assert b"root:" not in r.content and b"bundle_id" not in r.content


def test_unknown_ids_are_404_for_search_and_delete(shared_server: Server) -> None:
    _error(httpx.post(f"{shared_server.url}/search/by-id/nope_1"), 404, "unknown_gallery_id")
    r = httpx.delete(
        f"{shared_server.url}/gallery/nope_1", headers={"authorization": "Bearer secret"}
    )
    _error(r, 404, "unknown_gallery_id")


def _size(server: Server) -> int:
    return httpx.get(f"{server.url}/health").json()["gallery_items"]


def test_only_the_token_holder_writes(shared_server: Server, published: Published) -> None:
    photo = published.photos("user")[3].read_bytes()
    url = shared_server.url
    before = _size(shared_server)
    r = httpx.post(f"{url}/gallery", files={"image": photo}, params={"detect": False})
    _error(r, 401, "missing_token")
    assert r.headers["www-authenticate"] == "Bearer"
    wrong = {"authorization": "Bearer guess"}
    r = httpx.post(
        f"{url}/gallery", files={"image": photo}, params={"detect": False}, headers=wrong
    )
    _error(r, 403, "wrong_token")
    some = httpx.post(f"{url}/search", files={"image": photo}, params={"detect": False}).json()
    victim = some["items"][0]["results"][0]["gallery_id"]
    _error(httpx.delete(f"{url}/gallery/{victim}"), 401)
    _error(httpx.delete(f"{url}/gallery/{victim}", headers=wrong), 403)
    assert _size(shared_server) == before  # nothing changed
    assert httpx.get(f"{url}/gallery/{victim}/image").status_code == 200

    ok = {"authorization": "Bearer secret"}
    r = httpx.post(f"{url}/gallery", files={"image": photo}, params={"detect": False}, headers=ok)
    assert r.status_code == 201, r.text
    (added,) = r.json()["added"]
    found = httpx.post(f"{url}/search", files={"image": photo}, params={"detect": False}).json()
    assert found["items"][0]["results"][0]["gallery_id"] == added
    assert httpx.delete(f"{url}/gallery/{added}", headers=ok).json()["deleted"] == added
    again = httpx.post(
        f"{url}/search", files={"image": photo}, params={"detect": False, "top_k": 100}
    ).json()
    assert added not in {x["gallery_id"] for x in again["items"][0]["results"]}
    assert httpx.get(f"{url}/gallery/{added}/image").status_code == 404
    assert _size(shared_server) == before


def test_without_a_token_writes_need_loopback(
    server_factory, bundle_copy: Path, published: Published
) -> None:
    photo = published.photos("user")[0].read_bytes()
    local = server_factory(bundle_copy)
    r = httpx.post(f"{local.url}/gallery", files={"image": photo}, params={"detect": False})
    assert r.status_code == 201, r.text
    local.kill()
    public = server_factory(bundle_copy, host="0.0.0.0")
    before = _size(public)
    r = httpx.post(f"{public.url}/gallery", files={"image": photo}, params={"detect": False})
    msg = _error(r, 403, "writes_disabled")
    assert "CLOTHES_RETRIEVAL_TOKEN" in msg
    assert _size(public) == before
    assert httpx.post(f"{public.url}/search", files={"image": photo}).status_code == 200


def test_no_cors_headers_unless_configured(shared_server: Server) -> None:
    r = httpx.get(f"{shared_server.url}/health", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(
        f"{shared_server.url}/search",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers and pre.status_code < 500


def test_the_openapi_page_and_the_web_page_are_served(shared_server: Server) -> None:
    docs = httpx.get(f"{shared_server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = httpx.get(f"{shared_server.url}/openapi.json").json()
    assert {"/search", "/search/by-id/{gallery_id}", "/gallery", "/health"} <= set(schema["paths"])
    page = httpx.get(shared_server.url + "/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN


def test_a_republished_bundle_is_served_without_a_restart(
    server_factory, published: Published, tmp_path: Path
) -> None:
    from tests.service.test_engine import _single_model_bundle

    bundle = copy_bundle(published, tmp_path / "served" / "published_index")
    server = server_factory(bundle)
    old = httpx.get(f"{server.url}/health").json()["bundle_id"]
    photo = published.photos("user")[0].read_bytes()
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:  # requests in flight while the bundle is swapped
        with server.client() as c:
            while not stop.is_set():
                r = c.post("/search", files={"image": photo}, params={"detect": False})
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    staged = _single_model_bundle(published, tmp_path / "next" / "published_index")
    shutil.rmtree(bundle)
    shutil.move(staged, bundle)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        h = httpx.get(f"{server.url}/health").json()
        if h["bundle_id"] != old:
            break
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert h["bundle_id"] != old and h["models"] == ["sample_lite0_gem"] and h["reloads"] == 1
    assert errors == []
    assert server.process.poll() is None
