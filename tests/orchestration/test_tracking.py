"""An asset's ``wandb_run`` metadata: the run's URL online, its folder offline, else none."""

import dagster as dg

from orchestration.defs.tracking import wandb_run_metadata


def test_wandb_run_metadata_links_the_run() -> None:
    online = {"id": "a1", "mode": "online", "dir": "/w/run-a1", "url": "https://wandb.ai/x/a1"}
    assert wandb_run_metadata(online) == {"wandb_run": dg.MetadataValue.url(online["url"])}
    offline = {"id": "a1", "mode": "offline", "dir": "/w/offline-run-a1", "url": None}
    assert wandb_run_metadata(offline) == {"wandb_run": dg.MetadataValue.path(offline["dir"])}
    assert wandb_run_metadata(None) == {}
