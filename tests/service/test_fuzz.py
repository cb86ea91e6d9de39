"""Fuzz the served OpenAPI schema (schemathesis): every operation, with generated valid
(positive) and invalid (negative) requests, sent with the write token so that writes are
exercised too. Not one 5xx; every 4xx is the JSON error body. The counts are written to
the test artifacts (``service-fuzz.json``).

schemathesis' own pytest plugin does not run under pytest 9 (it reads a removed pytest
attribute), so the operations' hypothesis strategies are driven here directly."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.service.conftest import Server

ARTIFACTS = Path(os.environ.get("CLOTHES_RETRIEVAL_ARTIFACTS", "test-artifacts"))
EXAMPLES = 25  # per operation and mode


def _fuzz(op, mode: GenerationMode, url: str, counts: Counter) -> None:
    name = f"{op.method.upper()} {op.path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(op.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call_and_validate(
            base_url=url,
            headers={"authorization": "Bearer secret"},
            checks=[not_a_server_error],
            timeout=60,
        )
        counts[(name, mode.value, response.status_code)] += 1
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and body["error"]["message"], response.text

    run()


def test_no_generated_request_gets_a_server_error(shared_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{shared_server.url}/openapi.json")
    counts: Counter = Counter()
    unsatisfiable: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 6
    for op in operations:
        for mode in GenerationMode:
            try:
                _fuzz(op, mode, shared_server.url, counts)
            except Unsatisfiable:  # nothing in the operation can be made invalid (GET /health)
                assert mode is GenerationMode.NEGATIVE
                unsatisfiable.append(f"{op.method.upper()} {op.path} [{mode.value}]")
    total = sum(counts.values())
    assert total > 200, counts
    assert not [k for k in counts if k[2] >= 500]
    by_status: Counter = Counter()
    for (_, _, status), n in counts.items():
        by_status[str(status)] += n
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "service-fuzz.json").write_text(
        json.dumps(
            {
                "requests": total,
                "server_errors": 0,
                "by_status": dict(sorted(by_status.items())),
                "no_invalid_request_possible": unsatisfiable,
                "by_operation": {
                    f"{op} [{mode}] {status}": n for (op, mode, status), n in sorted(counts.items())
                },
            },
            indent=2,
        )
    )
