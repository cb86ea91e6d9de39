"""The link from an asset's materialisation to its experiment-tracking (W&B) run."""

import dagster as dg


def wandb_run_metadata(tracking: dict | None) -> dict[str, dg.MetadataValue]:
    """``{"wandb_run": <the run's URL>}`` online, ``{"wandb_run": <its offline folder>}``
    offline (upload it with ``wandb sync``); nothing when tracking was disabled.

    ``tracking``: a training or report result's ``tracking`` (``Tracker.info``).
    """
    if not tracking:
        return {}
    if tracking.get("url"):
        return {"wandb_run": dg.MetadataValue.url(tracking["url"])}
    return {"wandb_run": dg.MetadataValue.path(tracking["dir"])}
