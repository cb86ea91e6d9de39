# The two commands (see README): `make run` and `make test`. Both set up first if needed.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= configs/pipeline/sample.yaml
# Extra profile overrides for `make run` / `make real-benchmark`, e.g.
# SET='--set data.sources.street_queries.root=/photos'
SET ?=
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
# OpenMP threads spin while waiting by default; on a shared 2-core machine that makes two
# torch threads ~4x slower than one. Passive waiting removes the penalty.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup run serve real-benchmark smoke test test-slow test-gpu lint format dagster clean-outputs

setup:
	@scripts/setup.sh

# The whole asset graph of a profile as one Dagster run (default: the synthetic sample).
run: setup
	.venv/bin/clothes-retrieval run --profile $(PROFILE) $(SET)

# The search service (HTTP API + web page) on the profile's published bundle (after `make run`).
serve: setup
	.venv/bin/clothes-retrieval serve --profile $(PROFILE)

# The real street-to-shop profile (street photos -> product photos; ~51 min on 2 cores).
real-benchmark: setup
	.venv/bin/clothes-retrieval run --profile configs/pipeline/real.yaml $(SET)

# The DeepFashion2 profile at the paper's sizes, capped to a step per network, on a
# synthetic sample in the DeepFashion2 layout (the paper configs build, train, infer, report).
smoke: setup
	.venv/bin/clothes-retrieval run --profile configs/pipeline/deepfashion2_smoke.yaml $(SET)

# Everything on SQLite, then the orchestration tests on PostgreSQL (scripts/test.sh).
test: setup
	@scripts/test.sh

test-slow: setup
	WANDB_MODE=disabled $(PY) -m pytest -m "slow"

test-gpu: setup
	@scripts/test_gpu.sh

lint: setup
	.venv/bin/ruff check src orchestration tests benchmarks scripts
	.venv/bin/ruff format --check src orchestration tests benchmarks scripts

format: setup
	.venv/bin/ruff format src orchestration tests benchmarks scripts
	.venv/bin/ruff check --fix src orchestration tests benchmarks scripts

# The UI on a profile's instance (the one `make run PROFILE=...` writes to).
dagster: setup
	home=$$($(PY) -m orchestration.run $(PROFILE)) && \
	DAGSTER_HOME=$$home CLOTHES_RETRIEVAL_PROFILE=$(PROFILE) \
	.venv/bin/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

clean-outputs:
	rm -rf outputs
