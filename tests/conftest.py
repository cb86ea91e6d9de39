"""Test-wide settings: offline, no tracking, CPU."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
