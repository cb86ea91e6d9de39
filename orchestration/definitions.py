"""Entry point of the code location: `dagster dev -m orchestration.definitions`."""

from orchestration.defs import build_definitions

defs = build_definitions()
