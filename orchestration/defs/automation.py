"""When an asset rebuilds by itself: after its inputs changed, and only once every ancestor
is settled.

``AutomationCondition.eager()`` fires as soon as *one* dependency updated, as long as no
*direct* dependency is missing or in progress. In a graph with shortcuts (the report reads
the item table directly, and the item table's change also reaches the report through the
crops, the models and the embeddings) it fires on the first update and scores old
embeddings against new items while the models still wait to retrain. ``REBUILD`` adds
that no ancestor, up to the graph's depth, is missing, in progress or requested in the
same tick: the change then flows through the graph in order, each asset built once,
after everything it depends on. A changed config (the asset's code version, after the code
location reloads) starts a rebuild the same way as changed data.
"""

from __future__ import annotations

import dagster as dg

__all__ = ["MAX_DEPTH", "REBUILD", "after_every_ancestor"]

# Longest path from a source to the last asset (source -> item_table -> coco_exports ->
# detector -> detections -> fused_boxes -> embeddings -> report -> published_index), plus
# one level of headroom for a stage added later.
MAX_DEPTH = 9


def after_every_ancestor(depth: int = MAX_DEPTH) -> dg.AutomationCondition:
    """``eager()``, or the asset's code version changed, and no ancestor within ``depth``
    levels is missing, in progress or about to be requested."""
    busy = (
        dg.AutomationCondition.missing()
        | dg.AutomationCondition.in_progress()
        | dg.AutomationCondition.will_be_requested()
    )
    pending = dg.AutomationCondition.any_deps_match(busy)
    for _ in range(depth - 1):
        pending = dg.AutomationCondition.any_deps_match(busy | pending)
    config_changed = (
        dg.AutomationCondition.code_version_changed().since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    )
    return ((dg.AutomationCondition.eager() | config_changed) & ~pending).with_label(
        "eager or config changed, after every ancestor"
    )


REBUILD = after_every_ancestor()
