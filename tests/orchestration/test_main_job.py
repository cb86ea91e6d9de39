"""The main job at its real size (slow): `make run`'s command on the sample profile, in a
fresh project, from generating the sample to the published index (~8-10 min on 2 cores)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import dagster as dg
import pytest

from clothes_retrieval.cli import main
from tests.orchestration.tiny_project import fresh_copy

LINE = re.compile(
    r"sample: gt acc@1 (\d\.\d{3}) acc@10 (\d\.\d{3}), detected acc@1 (\d\.\d{3}) "
    r"acc@10 (\d\.\d{3})"
)


@pytest.mark.slow
def test_make_run_builds_the_whole_sample_graph_and_publishes(tmp_path: Path) -> None:
    project = fresh_copy(tmp_path)
    profile = project / "configs" / "pipeline" / "sample.yaml"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["run", "--profile", str(profile)])
    lines = buf.getvalue().strip().splitlines()
    assert code == 0, "\n".join(lines)
    m = LINE.fullmatch(lines[-1])
    assert m, lines[-1]
    gt1, gt10, det1, det10 = (float(v) for v in m.groups())
    # trained models retrieve far above chance (a 1-in-hundreds gallery), as measured
    assert gt1 > 0.5 and gt10 > 0.8 and det10 >= 0.1, lines[-1]

    out = project / "outputs" / "sample"
    with dg.DagsterInstance.from_config(str(project / ".dagster" / "sample")) as instance:
        (run,) = instance.get_runs()
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        checks = {
            r.event_log_entry.dagster_event.event_specific_data.asset_check_key.name: (
                r.event_log_entry.dagster_event.event_specific_data.passed
            )
            for r in records
        }
    assert checks and all(checks.values()), checks
    assert (out / "published_index" / "index" / "index.faiss").is_file()
    assert (out / "published_index" / "bundle.json").is_file()  # the bundle make serve serves
    report = (out / "evaluation_report" / "report.md").read_text()
    for table in ("Table 2 layout", "Table 3 layout", "Table 5 layout", "Table 6 layout"):
        assert table in report, table
    assert "whiten-pca" in report
    for model in ("sample_lite0_gem", "sample_lite0_gem_mac"):
        assert (out / "embeddings" / model / "train" / "query.npy").is_file()
