"""A tiny project (git + DVC repo, a profile, a generated sample) for orchestration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from clothes_retrieval.data.sample import SampleDataConfig, generate_sample_data
from clothes_retrieval.versioning import dvc_add

DVC = str(Path(sys.executable).with_name("dvc"))

# Small enough that the whole data stage materialises in seconds.
TINY_SAMPLE: dict = {
    "seed": 3,
    "groups": {"train": 5, "validation": 4},
    "defects": 1,
    "consumer": {"long_side": 128},
    "shop": {"long_side": 96},
}


def _run(cmd: list[str], cwd: Path) -> None:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)


REPO = Path(__file__).resolve().parents[2]

# Two sample-profile models cut to one epoch on 64-px crops: the whole retrieval and
# search stage then runs in well under a minute on the CPU.
TINY_RETRIEVAL: dict = {
    "registry": str(REPO / "configs" / "retrieval"),
    "models": ["sample_lite0_gem", "sample_lite0_gem_mac"],
    "overrides": {"train": {"epochs": 1, "batch_size": 16}, "model": {"input_size": [64, 64]}},
    "torch_threads": 1,
}
TINY_SEARCH: dict = {
    "box_sources": ["gt"],
    "ensembles": {"both": {"models": ["sample_lite0_gem", "sample_lite0_gem_mac"]}},
    "postprocess": {
        "nearest neighbour": {},
        "re-ranking": {"rerank": {"enabled": True, "k1": 5, "k2": 2}},
        # fitted on the training split's embeddings (a few dozen boxes: 8 dimensions)
        "pca whitening": {"whitening": {"mode": "pca", "dim": 8}},
    },
    "publish": {"name": "both", "box_source": "gt"},
    "acc10_floor": 0.0,
    "examples": 2,
}


# Two detector families (single-stage ATSS, CenterNet), one epoch each on the tiny images.
TINY_DETECTION: dict = {
    "configs": str(REPO / "configs" / "detectors"),
    "detectors": ["atss", "centernet"],
    "max_epochs": 1,
    "score_thr": 0.0,  # a 1-epoch detector's scores are low; keep its top boxes anyway
    "max_per_image": 20,
    "cpu_threads": 1,
    "fusion": {"label_mode": "vote", "max_per_image": 5},
}


def make_project(
    root: Path,
    sample: dict | None = None,
    *,
    with_models: bool = False,
    with_detection: bool = False,
) -> Path:
    """Write a project at ``root`` with the sample generated and tracked; returns the profile.

    ``with_models`` adds the retrieval and search stages (two tiny models)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    _run(["git", "init", "-q"], root)
    _run([DVC, "init", "-q"], root)
    _run([DVC, "config", "core.analytics", "false"], root)
    profile = {
        "name": "tiny",
        "data": {
            "sources": {
                "deepfashion2": {
                    "source": "deepfashion2",
                    "root": "data/sample",
                    "dvc_file": "data.dvc",
                }
            },
            "generate_sample": True,
        },
        "output_root": "outputs",
        "sample": sample or TINY_SAMPLE,
        "crops": {"max_side": 64},
    }
    if with_models:
        # More validation products, so that Acc@10 of a 1-epoch model stays below 1.
        profile["sample"] = {**profile["sample"], "groups": {"train": 5, "validation": 10}}
        profile["retrieval"] = TINY_RETRIEVAL
        profile["search"] = TINY_SEARCH
    if with_detection:
        profile["detection"] = TINY_DETECTION
        profile["search"] = {**profile["search"], "box_sources": ["gt", "fused"]}
    path = root / "configs" / "tiny.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(profile))
    generate_sample_data(
        SampleDataConfig(**profile["sample"]), root / "data" / "sample", progress=False
    )
    dvc_add(root / "data", repo_root=root)
    return path


def fresh_copy(tmp_path: Path) -> Path:
    """The repository's configs in a new git + DVC project under ``tmp_path``: where a slow
    test runs a shipped profile as a new user would."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "configs", project / "configs")
    (project / "pyproject.toml").write_text("[project]\nname = 'copy'\n")
    _run(["git", "init", "-q"], project)
    _run([DVC, "init", "-q"], project)
    return project
