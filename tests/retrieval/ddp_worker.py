"""Run under torchrun by test_distributed.py: train the tiny model, save this rank's weights."""

import os
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from conftest import tiny_config  # noqa: E402

from clothes_retrieval.retrieval.train import train_retrieval_model  # noqa: E402


def main() -> None:
    crops, out = Path(sys.argv[1]), Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    cfg = tiny_config(train={"epochs": 1, "batch_size": 4, "iterations_per_epoch": 2})
    result = train_retrieval_model(cfg, pd.read_parquet(crops), None, out / "run", progress=False)
    state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    torch.save({"state": state, "history": result.history}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
