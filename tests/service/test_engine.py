"""The library service on a real published bundle: what it answers matches what the
pipeline evaluated (same boxes, same vectors, same ranking), bad input is refused with
the right code, and gallery changes are committed, survive a restart and a new bundle."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clothes_retrieval.index import build_index, concatenate_embeddings
from clothes_retrieval.search.experiments import MIN_BOX_SIDE, load_embedding_set
from clothes_retrieval.service import (
    BundleError,
    InputError,
    SearchService,
    ServiceHolder,
    ServiceLimits,
    UnknownItemError,
    decode_image,
    publish_bundle,
    read_bundle_manifest,
    validate_bundle,
)
from clothes_retrieval.service.bundle import GALLERY_COLUMNS
from clothes_retrieval.versioning import read_lineage
from tests.service.conftest import Published, detected_photo

MODELS = ["sample_lite0_gem", "sample_lite0_gem_mac"]


def _out(published: Published) -> Path:
    return published.bundle.parent


def _gallery_vectors(published: Published, models=MODELS) -> np.ndarray:
    sets = [load_embedding_set(_out(published) / "embeddings" / m / "gt") for m in models]
    return concatenate_embeddings({m: s.gallery for m, s in zip(models, sets, strict=True)})


# -- the bundle -------------------------------------------------------------------------
def test_the_bundle_holds_everything_a_server_needs(published: Published) -> None:
    b = published.bundle
    manifest = read_bundle_manifest(b)
    out = _out(published)
    assert [m["name"] for m in manifest["models"]] == MODELS
    assert [d["name"] for d in manifest["detectors"]] == ["atss", "centernet"]
    assert manifest["fusion"]["detectors"] == ["atss", "centernet"]
    assert manifest["fusion"]["label_mode"] == "vote"
    assert manifest["detection"] == {"score_thr": 0.0, "max_per_image": 20}
    for entry in manifest["models"] + manifest["detectors"]:
        for key in ("path", "checkpoint", "config"):
            if key in entry:
                assert (b / entry[key]).is_file(), entry[key]
    assert manifest["data_version"] == read_lineage(out / "search_index") == read_lineage(b)
    report = json.loads((out / "evaluation_report" / "report.json").read_text())
    assert manifest["evaluation"] == report["headline"]
    assert manifest["validated"]["self_similarity"] >= 0.99
    gallery = pd.read_parquet(b / "gallery.parquet")
    assert tuple(gallery.columns) == GALLERY_COLUMNS
    assert gallery["gallery_id"].is_unique
    assert manifest["gallery"]["items"] == len(gallery)
    rows = pd.read_parquet(out / "search_index" / "gallery_rows.parquet")
    assert len(gallery) == len(rows)  # one row per indexed vector, in index order
    np.testing.assert_allclose(gallery[["x1", "y1", "x2", "y2"]], rows[["x1", "y1", "x2", "y2"]])
    assert (gallery["pair_id"].to_numpy() == rows["pair_id"].to_numpy()).all()
    for f, src in zip(gallery["image_file"], rows["image_path"], strict=True):
        assert (b / "images" / f).read_bytes() == Path(src).read_bytes()


def test_a_bundle_whose_models_disagree_with_its_index_is_not_published(
    published: Published, tmp_path: Path
) -> None:
    out = _out(published)
    dst = tmp_path / "published_index"
    shutil.copytree(published.bundle, dst)
    before = (dst / "bundle.json").read_text()
    # Both models are 512-d: swapped, the bundle loads but its vectors are not the index's.
    with pytest.raises(BundleError, match="is not found"):
        publish_bundle(
            dst,
            index_dir=out / "search_index",
            report_dir=out / "evaluation_report",
            models={
                MODELS[0]: out / "model" / MODELS[1],
                MODELS[1]: out / "model" / MODELS[0],
            },
            data_version="v",
            profile="tiny",
            validate=validate_bundle,
        )
    assert (dst / "bundle.json").read_text() == before  # the previous bundle is untouched
    assert not list(tmp_path.glob(".published_index.*"))  # no staged leftovers


def test_a_missing_or_foreign_bundle_is_named(tmp_path: Path, published: Published) -> None:
    with pytest.raises(BundleError, match="no published bundle.*make run"):
        SearchService(tmp_path)
    dst = tmp_path / "b"
    shutil.copytree(published.bundle, dst)
    (dst / "models" / MODELS[0] / "model.pt").write_bytes(b"truncated")
    with pytest.raises(BundleError, match=str(dst)):
        SearchService(dst)


# -- answers match the evaluated pipeline ----------------------------------------------
def test_query_vectors_are_the_pipelines(service: SearchService, published: Published) -> None:
    """The service embeds a box exactly as the evaluation did (same crop, transform, models,
    weights): vectors of ground-truth query boxes equal the embeddings asset's."""
    out = _out(published)
    sets = {m: load_embedding_set(out / "embeddings" / m / "gt") for m in MODELS}
    expected = concatenate_embeddings({m: s.query for m, s in sets.items()})
    rows = sets[MODELS[0]].query_rows.head(6)
    images = [Image.open(p).convert("RGB") for p in rows["image_path"]]
    got = service._embed_boxes(images, list(rows[["x1", "y1", "x2", "y2"]].to_numpy()))
    np.testing.assert_allclose(got, expected[: len(rows)], atol=2e-5)


def test_results_are_the_exact_nearest_gallery_items(
    service: SearchService, published: Published
) -> None:
    gallery = _gallery_vectors(published)
    ids = pd.read_parquet(published.bundle / "gallery.parquet")["gallery_id"].to_numpy()
    photo = published.photos("user")[0]
    answer = service.search(photo.read_bytes(), top_k=7, detect=False)
    (item,) = answer.items
    w, h = Image.open(photo).size
    assert item.box == [0.0, 0.0, float(w), float(h)] and item.category == "whole photo"
    vec = service._embed_boxes([Image.open(photo).convert("RGB")], [np.array(item.box)])
    sims = gallery @ vec[0]
    order = np.argsort(-sims, kind="stable")[:7]
    assert [r.gallery_id for r in item.results] == list(ids[order])
    np.testing.assert_allclose([r.similarity for r in item.results], sims[order], atol=1e-5)
    by_id = pd.read_parquet(published.bundle / "gallery.parquet").set_index("gallery_id")
    for r in item.results:
        assert r.image_id == by_id.loc[r.gallery_id, "image_id"]
        assert r.category == by_id.loc[r.gallery_id, "category_name"]


def test_detected_boxes_are_the_pipelines_fused_boxes(
    service: SearchService, published: Published
) -> None:
    """On a validation photo the service finds the boxes the pipeline's own functions find
    on it (run_detector per detector with the bundle's thresholds, then fuse_detectors with
    its fusion config; boxes under MIN_BOX_SIDE dropped, best first). The photo is
    detected alone: the detections asset batches photos of different sizes, and mmdet's
    padding of a batch moves boxes of undertrained detectors."""
    from clothes_retrieval.detection.inference import run_detector
    from clothes_retrieval.fusion import FusionConfig, fuse_detectors

    photo = detected_photo(service, published)
    answer = service.search(photo.read_bytes(), top_k=3, max_items=20)
    images = published.items[published.items["image_path"] == str(photo)].head(1)
    manifest = read_bundle_manifest(published.bundle)
    tables = [
        run_detector(
            published.bundle / d["checkpoint"],
            published.bundle / d["config"],
            images,
            **manifest["detection"],
            batch_size=1,
            detector=d["name"],
            progress=False,
        ).detections
        for d in manifest["detectors"]
    ]
    fusion = FusionConfig.model_validate(manifest["fusion"])
    f = fuse_detectors(pd.concat(tables), fusion, progress=False).fused
    f = f[((f["x2"] - f["x1"]) >= MIN_BOX_SIDE) & ((f["y2"] - f["y1"]) >= MIN_BOX_SIDE)]
    f = f.sort_values("score", ascending=False, kind="stable")
    assert len(answer.items) == len(f) > 0
    np.testing.assert_allclose(
        [it.box for it in answer.items], f[["x1", "y1", "x2", "y2"]].to_numpy(), atol=0.01
    )
    np.testing.assert_allclose([it.score for it in answer.items], f["score"], atol=1e-6)
    scores = [it.score for it in answer.items]
    assert scores == sorted(scores, reverse=True)
    assert len(service.search(photo.read_bytes(), max_items=1).items) == 1


def test_a_photo_where_nothing_is_detected_answers_empty_with_the_reason(
    bundle_copy: Path, published: Published
) -> None:
    manifest = json.loads((bundle_copy / "bundle.json").read_text())
    manifest["detection"]["score_thr"] = 0.5  # the tiny detectors score about 0.01
    (bundle_copy / "bundle.json").write_text(json.dumps(manifest))
    service = SearchService(bundle_copy)
    photo = published.photos("user")[0].read_bytes()
    answer = service.search(photo)
    assert answer.items == []
    assert "no garment detected" in answer.reason and "detect=false" in answer.reason
    assert "0.5" in answer.reason
    assert len(service.search(photo, detect=False).items) == 1
    assert service.add_photo(photo) == []  # nothing to add either


def test_search_many_answers_each_photo_as_alone(
    service: SearchService, published: Published
) -> None:
    photos = [Image.open(p).convert("RGB") for p in published.photos("user")[:5]]
    together = service.search_many(photos, top_k=4, detect=False)
    for photo, answer in zip(photos, together, strict=True):
        alone = service.search_many([photo], top_k=4, detect=False)[0]
        assert [r.gallery_id for r in answer.items[0].results] == [
            r.gallery_id for r in alone.items[0].results
        ]
        np.testing.assert_allclose(
            [r.similarity for r in answer.items[0].results],
            [r.similarity for r in alone.items[0].results],
            atol=1e-5,
        )


@pytest.mark.parametrize(("top_k", "max_items"), [(0, None), (101, None), (None, 0), (None, 21)])
def test_out_of_range_options_are_refused(service: SearchService, top_k, max_items) -> None:
    photo = io.BytesIO()
    Image.new("RGB", (32, 32)).save(photo, format="PNG")
    with pytest.raises(InputError) as info:
        service.search(photo.getvalue(), top_k=top_k, max_items=max_items)
    assert info.value.status == 422
    assert ("top_k" if top_k is not None else "max_items") in info.value.message


def test_search_by_id_leaves_the_item_out_and_ranks_the_rest(
    service: SearchService, published: Published
) -> None:
    gallery = _gallery_vectors(published)
    ids = pd.read_parquet(published.bundle / "gallery.parquet")["gallery_id"].to_numpy()
    answer = service.search_by_id(str(ids[3]), top_k=5)
    sims = gallery @ gallery[3]
    order = [i for i in np.argsort(-sims, kind="stable") if i != 3][:5]
    assert [r.gallery_id for r in answer.items[0].results] == list(ids[order])
    with pytest.raises(UnknownItemError, match="no gallery item 'nope'"):
        service.search_by_id("nope")


# -- bad images --------------------------------------------------------------------------
def _png(size=(40, 30), color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(size=(40, 30)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="JPEG")
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    data = _jpeg((400, 300))
    return data[: len(data) // 2]  # the header parses; the pixels stop half-way


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "empty_image"),
        (b"GIF89 not really", 415, "not_an_image"),
        (b"%PDF-1.4 hello", 415, "not_an_image"),
        (_truncated_jpeg(), 422, "corrupt_image"),
    ],
)
def test_undecodable_uploads_are_refused_with_their_reason(data, status, code) -> None:
    with pytest.raises(InputError) as info:
        decode_image(data)
    assert (info.value.status, info.value.code) == (status, code)


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")  # ~20 kB, 144 Mpx
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(InputError) as info:
        decode_image(buf.getvalue())
    assert info.value.status == 413 and "144000000 pixels" in info.value.message
    small = ServiceLimits(max_pixels=1000)
    with pytest.raises(InputError, match="1200 pixels, over the limit of 1000"):
        decode_image(_png((40, 30)), small)


def test_an_upload_over_the_size_limit_is_refused() -> None:
    data = _png((40, 30))
    with pytest.raises(InputError) as info:
        decode_image(data, ServiceLimits(max_upload_bytes=len(data) - 1))
    assert info.value.status == 413
    assert decode_image(data, ServiceLimits(max_upload_bytes=len(data))).image.size == (40, 30)


def test_other_formats_are_refused_and_exif_orientation_is_applied() -> None:
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    with pytest.raises(InputError) as info:
        decode_image(tiff.getvalue())
    assert info.value.code == "unsupported_format" and "TIFF" in info.value.message
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (40, 30)).save(rotated, format="JPEG", exif=exif)
    assert decode_image(rotated.getvalue()).image.size == (30, 40)


# -- gallery changes ---------------------------------------------------------------------
def test_an_added_photo_is_found_and_a_deleted_item_never_returned(
    bundle_copy: Path, published: Published
) -> None:
    service = SearchService(bundle_copy)
    size = service.gallery.view.size
    photo = published.photos("user")[1].read_bytes()
    ids = service.add_photo(photo, detect=False)
    assert ids == ["a1_1"] and service.gallery.view.size == size + 1
    top = service.search(photo, top_k=1, detect=False).items[0].results[0]
    assert top.gallery_id == "a1_1" and top.similarity > 0.999
    assert service.image_path("a1_1").is_file()

    every = size + 1
    base_id = service.search(photo, top_k=2, detect=False).items[0].results[1].gallery_id
    service.delete(base_id)
    service.delete("a1_1")
    # Still top_k live results when deleted items rank among the first.
    near = service.search(photo, top_k=2, detect=False).items[0].results
    assert len(near) == 2 and not {r.gallery_id for r in near} & {base_id, "a1_1"}
    other = next(g for g in service.gallery.view.base_ids if g != base_id)
    for answer in (
        service.search(photo, top_k=every, detect=False),
        service.search_by_id(str(other), top_k=every - 2),
    ):
        returned = {r.gallery_id for r in answer.items[0].results}
        assert len(returned) == size - 1 - (answer.items[0].category != "whole photo")
        assert not returned & {base_id, "a1_1"}
    with pytest.raises(UnknownItemError):
        service.delete(base_id)
    with pytest.raises(UnknownItemError):
        service.image_path("a1_1")
    assert service.gallery.view.size == size - 1

    again = SearchService(bundle_copy)  # a restart reads the committed state
    assert again.gallery.view.size == size - 1
    assert again.gallery.item(base_id) is None and again.gallery.item("a1_1") is None
    assert again.add_photo(photo, detect=False) == ["a2_1"]  # ids are never reused


def test_files_of_an_uncommitted_add_are_ignored_and_removed(
    bundle_copy: Path, published: Published
) -> None:
    service = SearchService(bundle_copy)
    service.add_photo(published.photos("user")[0].read_bytes(), detect=False)
    state = service.state_dir
    # What a crash between writing the photo and committing state.json leaves behind:
    (state / "images" / "a9.jpg").write_bytes(b"half")
    np.save(state / "vectors" / service.bundle_id / "a9.npy", np.zeros((1, 1024), np.float32))
    again = SearchService(bundle_copy)
    assert again.gallery.view.added_ids == ("a1_1",)
    assert not (state / "images" / "a9.jpg").exists()
    assert not (state / "vectors" / service.bundle_id / "a9.npy").exists()


def _single_model_bundle(published: Published, dst: Path) -> Path:
    """A real republish: the index of one model (512-d) and its bundle."""
    from clothes_retrieval.index import IndexManifest

    out = _out(published)
    es = load_embedding_set(out / "embeddings" / MODELS[0] / "gt")
    manifest = IndexManifest(
        models=(MODELS[0],),
        dims=(es.dim,),
        box_source="gt",
        data_version=read_lineage(out / "search_index"),
        weights=(1.0,),
        extra={"published_name": MODELS[0]},
    )
    index_dir = dst.parent / "index-one"
    build_index(concatenate_embeddings({MODELS[0]: es.gallery}), manifest).save(index_dir)
    shutil.copy2(out / "search_index" / "gallery_rows.parquet", index_dir)
    publish_bundle(
        dst,
        index_dir=index_dir,
        report_dir=out / "evaluation_report",
        models={MODELS[0]: out / "model" / MODELS[0]},
        data_version=manifest.data_version,
        profile="tiny",
        validate=validate_bundle,
    )
    return dst


def test_a_new_bundle_is_swapped_in_and_keeps_the_gallery_changes(
    bundle_copy: Path, published: Published
) -> None:
    holder = ServiceHolder(bundle_copy)
    old = holder.service
    photo = published.photos("user")[2].read_bytes()
    (added,) = holder.add_photo(photo, detect=False)
    deleted = str(old.gallery.view.base_ids[5])
    holder.delete(deleted)
    assert holder.maybe_reload() is False  # nothing new published

    _single_model_bundle(published, bundle_copy)  # replaces the folder, as publishing does
    assert holder.maybe_reload() is True
    new = holder.service
    assert new is not old and new.bundle_id != old.bundle_id
    assert list(new.models) == [MODELS[0]] and new.index.manifest.dim == 512
    # The addition was re-embedded with the new bundle's model; the deletion carried over.
    top = new.search(photo, top_k=1, detect=False).items[0].results[0]
    assert top.gallery_id == added and top.similarity > 0.999
    assert new.gallery.item(deleted) is None
    # A request still holding the old service finishes on it.
    assert old.search(photo, top_k=1, detect=False).items[0].results[0].gallery_id == added


def test_a_new_bundle_that_does_not_load_leaves_the_old_one_serving(
    bundle_copy: Path,
) -> None:
    holder = ServiceHolder(bundle_copy)
    manifest = json.loads((bundle_copy / "bundle.json").read_text())
    manifest["bundle_id"] = "broken"
    (bundle_copy / "bundle.json").write_text(json.dumps(manifest))
    (bundle_copy / "index" / "index.faiss").write_bytes(b"not faiss")
    assert holder.maybe_reload() is False
    assert holder.service.bundle_id != "broken"
    assert "broken" in holder.last_error and "does not load" in holder.last_error


def test_a_post_processed_configuration_is_not_published(
    published: Published, tmp_path: Path
) -> None:
    """The service ranks by nearest neighbour; an index published for re-ranking would be
    served otherwise than it was evaluated, so it is refused, naming the setting."""
    out = _out(published)
    index_dir = tmp_path / "index"
    shutil.copytree(out / "search_index", index_dir)
    meta = json.loads((index_dir / "manifest.json").read_text())
    meta["manifest"]["postprocess"] = ["rerank"]
    (index_dir / "manifest.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="rerank.*search.publish.postprocess"):
        publish_bundle(
            tmp_path / "published_index",
            index_dir=index_dir,
            report_dir=out / "evaluation_report",
            models={m: out / "model" / m for m in MODELS},
            data_version="v",
            profile="tiny",
        )
    assert not (tmp_path / "published_index").exists()
