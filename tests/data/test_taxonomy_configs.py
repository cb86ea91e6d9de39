"""Every taxonomy in configs/taxonomy/ maps only categories its sources declare, and
``map_to_taxonomy`` maps and drops rows as the files say."""

from __future__ import annotations

from pathlib import Path

import pytest

from clothes_retrieval.data.schema import CATEGORIES
from clothes_retrieval.data.sources.ccp import CCP_NON_GARMENTS
from clothes_retrieval.data.sources.darn import DARN_CATEGORIES
from clothes_retrieval.data.sources.mpv import MPV_CATEGORIES
from clothes_retrieval.data.sources.mvc import MVC_CATEGORIES
from clothes_retrieval.data.sources.street2shop import STREET2SHOP_CATEGORIES
from clothes_retrieval.data.sources.zalando import ZALANDO_CATEGORIES
from clothes_retrieval.data.taxonomy import DEFAULT_TAXONOMY_DIR, load_taxonomy, map_to_taxonomy
from tests.data.item_rows import whole_photo_items

# The 59 names of Clothing Co-Parsing's label_list.mat (index = label value), as read from
# ../shared/data/ccp/label_list.mat; the ccp adapter's category set is them less
# CCP_NON_GARMENTS.
CCP_LABELS = (
    "null", "accessories", "bag", "belt", "blazer", "blouse", "bodysuit", "boots", "bra",
    "bracelet", "cape", "cardigan", "clogs", "coat", "dress", "earrings", "flats", "glasses",
    "gloves", "hair", "hat", "heels", "hoodie", "intimate", "jacket", "jeans", "jumper",
    "leggings", "loafers", "necklace", "panties", "pants", "pumps", "purse", "ring", "romper",
    "sandals", "scarf", "shirt", "shoes", "shorts", "skin", "skirt", "sneakers", "socks",
    "stockings", "suit", "sunglasses", "sweater", "sweatshirt", "swimwear", "t-shirt", "tie",
    "tights", "top", "vest", "wallet", "watch", "wedges",
)  # fmt: skip
PRODUCT_CLASSES = (
    "dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt",
    "t-shirt",
)  # fmt: skip

# Each source's own category set (the category_name values its adapter can produce).
DECLARED: dict[str, set[str]] = {
    "ccp": set(CCP_LABELS) - set(CCP_NON_GARMENTS),
    "products": set(PRODUCT_CLASSES),
    "deepfashion2": set(CATEGORIES.values()),
    "street2shop": set(STREET2SHOP_CATEGORIES),
    "darn": set(DARN_CATEGORIES),
    "mvc": set(MVC_CATEGORIES),
    "mpv": set(MPV_CATEGORIES),
    "zalando": set(ZALANDO_CATEGORIES),
}

TAXONOMY_FILES = sorted(DEFAULT_TAXONOMY_DIR.glob("*.yaml"))


@pytest.mark.real_data
def test_ccp_labels_match_the_shared_data() -> None:
    from clothes_retrieval.profile import shared_data_root

    path = (
        shared_data_root(Path(__file__).resolve().parents[2]) / "ccp"
    )  # $CLOTHES_RETRIEVAL_SHARED_DATA or ../shared/data
    if not (path / "label_list.mat").is_file():
        pytest.skip(f"no CCP label list at {path}")
    from clothes_retrieval.data.sources.ccp import ccp_label_list

    assert tuple(ccp_label_list(path)) == CCP_LABELS


@pytest.mark.parametrize("path", TAXONOMY_FILES, ids=lambda p: p.stem)
def test_mapped_categories_are_declared(path: Path) -> None:
    taxonomy = load_taxonomy(path)
    assert taxonomy.name == path.stem
    for source, mapping in taxonomy.sources.items():
        assert source in DECLARED, f"{path.name}: source {source!r}: declare its categories here"
        mapped = {name for names in mapping.values() for name in names}
        unknown = sorted(mapped - DECLARED[source])
        assert not unknown, f"{path.name}: sources.{source} maps undeclared categories {unknown}"


def test_known_taxonomies_are_there() -> None:
    assert {"product10", "deepfashion2"} <= {p.stem for p in TAXONOMY_FILES}
    assert load_taxonomy("deepfashion2").classes == tuple(CATEGORIES.values())
    for name in ("product10", "deepfashion2"):
        assert set(DECLARED) <= set(load_taxonomy(name).sources), name


ROWS = [
    ("street2shop", "dresses"),
    ("street2shop", "tops"),
    ("street2shop", "footwear"),
    ("darn", "down coat"),
    ("darn", "tank top"),
    ("mvc", "Jeans"),
    ("mpv", "top"),
    ("zalando", "top"),
    ("deepfashion2", "short sleeve top"),
    ("ccp", "cardigan"),
]


@pytest.mark.parametrize(
    ("taxonomy", "expected"),
    [
        (
            "product10",
            {
                "dresses": ("dress", 1),
                "footwear": ("shoes", 7),
                "down coat": ("outwear", 4),
                "Jeans": ("pants", 5),
                "short sleeve top": ("t-shirt", 10),
                "cardigan": ("longsleeve", 3),
            },
        ),
        (
            "deepfashion2",
            {
                "dresses": ("short sleeve dress", 10),
                "down coat": ("long sleeve outwear", 4),
                "tank top": ("vest", 5),
                "Jeans": ("trousers", 8),
                "short sleeve top": ("short sleeve top", 1),
                "cardigan": ("long sleeve outwear", 4),
                "top": ("short sleeve top", 1),  # mpv and zalando
            },
        ),
    ],
)
def test_map_to_taxonomy(taxonomy: str, expected: dict[str, tuple[str, int]]) -> None:
    items = whole_photo_items(ROWS)
    mapped = map_to_taxonomy(items, load_taxonomy(taxonomy))
    # rows are kept by their uid; their original category is found through it
    original = items.set_index("item_uid")["category_name"]
    got = {
        original[uid]: (name, cid)
        for uid, name, cid in zip(
            mapped["item_uid"], mapped["category_name"], mapped["category_id"], strict=True
        )
    }
    assert got == expected  # unmapped categories (tops, footwear, ...) are dropped
    assert mapped["category_id"].dtype == "int64"


def test_map_one_source_with_an_empty_block() -> None:
    items = whole_photo_items([("mpv", "top"), ("mpv", "top")])
    assert map_to_taxonomy(items, load_taxonomy("product10")).empty
    # DeepFashion2 maps their one "top" to short sleeve top (m5, m6, m15, m16 train on them)
    mapped = map_to_taxonomy(items, load_taxonomy("deepfashion2"), source="mpv")
    assert mapped["category_name"].tolist() == ["short sleeve top"] * 2
