import os
import subprocess
import sys
from pathlib import Path

import torch


def test_ddp_two_cpu_processes_keep_identical_parameters(train_crops, tmp_path):
    """torchrun, 2 processes, gloo: after two steps every parameter (and class centre,
    through the shared optimizer step) is identical on both ranks, and only rank 0 wrote."""
    crops = tmp_path / "crops.parquet"
    train_crops.to_parquet(crops)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("ddp_worker.py")), str(crops), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert r0["state"].keys() == r1["state"].keys()
    for key, value in r0["state"].items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # BN buffers are per rank between DDP broadcasts
        assert torch.equal(value, r1["state"][key]), key
    assert r0["history"][0]["images"] == 2 * 2 * 4  # 2 iterations × 2 ranks × 4 crops
    assert last["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.json", "last.pt", "metrics.json", "model.pt"]  # fmt: skip
