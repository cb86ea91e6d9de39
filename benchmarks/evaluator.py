"""Time the DeepFashion2 retrieval evaluator on a validation-sized synthetic submission.

Synthetic split shaped like DeepFashion2 validation: 10,844 consumer images holding
12,550 query items (style > 0) plus style-0 items, 21,309 shop images holding ~37k gallery
items; one detection per query item plus distractor detections, 20 gallery entries each
(a third of them pointing at a correct shop image). Reference: the official script's own
per-item loop is not runnable (Python 2, typo); the target is < 30 s on 2 cores.

Prints as its last line: ``evaluator: N queries in S seconds``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from clothes_retrieval.evaluation import evaluate_retrieval


def synthetic_split(rng: np.random.Generator, n_user_images: int, n_query_items: int,
                    n_shop_images: int, n_gallery_items: int) -> pd.DataFrame:  # fmt: skip
    def boxes(n: int) -> np.ndarray:
        xy = rng.uniform(0, 300, size=(n, 2))
        wh = rng.uniform(30, 200, size=(n, 2))
        return np.concatenate([xy, xy + wh], axis=1)

    n_pairs = n_user_images // 2
    # query items: every user image gets >= 1, the rest spread at random
    u_img = np.concatenate(
        [np.arange(n_user_images), rng.integers(0, n_user_images, n_query_items - n_user_images)]
    )
    u_extra = rng.integers(0, n_user_images, n_user_images // 5)  # style-0 items
    u_img_all = np.concatenate([u_img, u_extra])
    u_style = np.concatenate([rng.integers(1, 3, len(u_img)), np.zeros(len(u_extra), int)])
    u_pair = u_img_all % n_pairs
    s_img = np.concatenate(
        [np.arange(n_shop_images), rng.integers(0, n_shop_images, n_gallery_items - n_shop_images)]
    )
    s_pair = s_img % n_pairs
    s_style = rng.integers(0, 3, len(s_img))
    df = pd.DataFrame(
        {
            "image_id": np.concatenate([u_img_all, 1_000_000 + s_img]),
            "source": ["user"] * len(u_img_all) + ["shop"] * len(s_img),
            "pair_id": np.concatenate([u_pair, s_pair]),
            "style": np.concatenate([u_style, s_style]),
            "category_id": rng.integers(1, 14, len(u_img_all) + len(s_img)),
        }
    )
    df[["x1", "y1", "x2", "y2"]] = boxes(len(df))
    df["item_index"] = df.groupby("image_id").cumcount() + 1
    return df


def synthetic_submission(rng: np.random.Generator, gt: pd.DataFrame) -> pd.DataFrame:
    users = gt[gt["source"] == "user"]
    shops = gt[gt["source"] == "shop"].reset_index(drop=True)
    n = len(users)
    jitter = rng.normal(0, 3, size=(n, 4))
    q_box = users[["x1", "y1", "x2", "y2"]].to_numpy() + jitter
    g_idx = rng.integers(0, len(shops), size=(n, 20))
    # a third of the queries get a correct shop item (same pair and style) in the list
    by_key = shops.groupby(["pair_id", "style"]).indices
    for r, key in enumerate(zip(users["pair_id"], users["style"], strict=True)):
        if r % 3 == 0 and key in by_key:
            g_idx[r, rng.integers(0, 20)] = by_key[key][0]
    g_img = shops["image_id"].to_numpy()[g_idx]
    g_box = shops[["x1", "y1", "x2", "y2"]].to_numpy()[g_idx] + rng.normal(0, 3, (n, 20, 4))
    return pd.DataFrame(
        {
            "query_image_id": users["image_id"].to_numpy(),
            "query_bbox": list(q_box),
            "query_cls": np.where(rng.random(n) < 0.9, users["category_id"], 1),
            "query_score": rng.random(n),
            "gallery_image_id": list(g_img),
            "gallery_bbox": list(g_box),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tenth of the size")
    args = parser.parse_args()
    scale = 10 if args.small else 1
    rng = np.random.default_rng(0)
    gt = synthetic_split(rng, 10_844 // scale, 12_550 // scale, 21_309 // scale, 37_183 // scale)
    sub = synthetic_submission(rng, gt)
    start = time.perf_counter()
    scores = evaluate_retrieval(gt, sub)
    seconds = time.perf_counter() - start
    print(f"submission records {len(sub)}, gallery items {int((gt.source == 'shop').sum())}")
    print(", ".join(f"Acc@{k} {v:.4f}" for k, v in scores.accuracy.items()))
    print(f"evaluator: {scores.n_queries} queries in {seconds:.2f} seconds")


if __name__ == "__main__":
    main()
