# `make demo` and `make test` work on a fresh clone: each creates .venv when missing and installs
# rlscale with the exact versions in constraints.txt (torch pinned to the 2.13.0 CPU build).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.installed-bench
PYTEST_FLAGS ?=

.PHONY: install demo demo-offline test test-fast test-long lint bench bench-d3rlpy-venv bench-mbrl-venv bench-imitation-venv bench-cql-hopper bench-generative-hopper clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, from the pinned CPU build, so nothing later pulls a CUDA build.
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(BENCH_INSTALLED): $(INSTALLED)
	$(PIP) install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $@

# PPO on CartPole-v1 on an embedded local Ray until mean return >= 450, then a greedy evaluation.
demo: install
	@set -e; \
	checkpoint=$$($(BIN)/rlscale train ppo --env CartPole-v1 --stop-reward 450 --seed 0 | tail -n 1); \
	$(BIN)/rlscale evaluate "$$checkpoint" --episodes 10; \
	echo "checkpoint:     $$checkpoint"; \
	echo "learning curve: $$(dirname "$$checkpoint")/learning_curve.png"

# The platform in one run: PPO online, collect a Minari dataset with it (noisy, 2 Ray actors),
# discrete CQL offline on that dataset, then a greedy evaluation of the offline policy.
DEMO_DATASETS ?= runs/datasets
demo-offline: install
	@set -e; \
	export MINARI_DATASETS_PATH="$${MINARI_DATASETS_PATH:-$(CURDIR)/$(DEMO_DATASETS)}"; \
	online=$$($(BIN)/rlscale train ppo --env CartPole-v1 --stop-reward 450 --seed 0 | tail -n 1); \
	dataset="demo/cartpole-ppo-$$(date +%Y%m%d-%H%M%S)-v0"; \
	$(BIN)/rlscale datasets collect --env CartPole-v1 --policy "$$online" --noise 0.3 \
	    --episodes 40 --workers 2 --name "$$dataset"; \
	$(BIN)/rlscale datasets info "$$dataset"; \
	offline=$$($(BIN)/rlscale train cql_discrete --env CartPole-v1 --dataset "$$dataset" \
	    --stop-iters 10 --seed 0 | tail -n 1); \
	$(BIN)/rlscale evaluate "$$offline" --episodes 10; \
	echo "online checkpoint:  $$online"; \
	echo "dataset:            $$MINARI_DATASETS_PATH/$$dataset"; \
	echo "offline checkpoint: $$offline"

# CI runs `make test`: everything but the `long` checks, within 60 minutes on 2 cores. The 30
# slowest tests are listed at the end, to see where that time goes.
test: install
	$(BIN)/python -m pytest -m "not long" --durations=30 $(PYTEST_FLAGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not long" $(PYTEST_FLAGS)

# Learning checks that take several minutes each; run before resolving the issue that asks for them.
test-long: install
	$(BIN)/python -m pytest -m long $(PYTEST_FLAGS)

lint: install
	$(BIN)/ruff check .

bench: $(BENCH_INSTALLED)
	$(BIN)/python benchmarks/policy_gradient_cartpole.py
	$(BIN)/python benchmarks/pg_rollout_scaling.py
	$(BIN)/python benchmarks/dqn_cartpole.py
	$(BIN)/python benchmarks/cliff_walking.py
	$(BIN)/python benchmarks/tabular_taxi_speed.py
	$(BIN)/python benchmarks/tune_overhead.py

# d3rlpy, the peer of benchmarks/cql_hopper.py, pins gymnasium 1.0: it gets its own venv.
D3RLPY_VENV := .venv-d3rlpy
bench-d3rlpy-venv: $(D3RLPY_VENV)/.installed

$(D3RLPY_VENV)/.installed: benchmarks/d3rlpy/constraints.txt
	test -x $(D3RLPY_VENV)/bin/python || $(PYTHON) -m venv $(D3RLPY_VENV)
	$(D3RLPY_VENV)/bin/pip install --quiet -c $< torch==2.13.0
	$(D3RLPY_VENV)/bin/pip install --quiet -c $< d3rlpy==2.8.1 "gymnasium[mujoco]==1.0.0"
	touch $@

# mbrl-lib, the peer of the PETS benchmark, pins gymnasium 0.26.3: it gets its own venv. Its
# hydra-core 1.0.3 pin fails at import on Python 3.11, so its requirements go in first with
# hydra-core 1.3 (see benchmarks/mbrl/constraints.txt), then mbrl itself without dependencies.
MBRL_VENV := .venv-mbrl
bench-mbrl-venv: $(MBRL_VENV)/.installed

$(MBRL_VENV)/.installed: benchmarks/mbrl/constraints.txt
	test -x $(MBRL_VENV)/bin/python || $(PYTHON) -m venv $(MBRL_VENV)
	$(MBRL_VENV)/bin/pip install --quiet -c $< torch==2.13.0
	$(MBRL_VENV)/bin/pip install --quiet -c $< gymnasium hydra-core omegaconf numpy matplotlib \
	    imageio sk-video termcolor tqdm
	$(MBRL_VENV)/bin/pip install --quiet -c $< --no-deps mbrl==0.2.0
	touch $@

# The `imitation` library (BC, DAgger, GAIL), the peer of benchmarks/imitation_peer.py, pins
# gymnasium 0.29 and stable-baselines3 2.2: it gets its own venv (numpy < 2, see its constraints).
IMITATION_VENV := .venv-imitation
bench-imitation-venv: $(IMITATION_VENV)/.installed

$(IMITATION_VENV)/.installed: benchmarks/imitation_lib/constraints.txt
	test -x $(IMITATION_VENV)/bin/python || $(PYTHON) -m venv $(IMITATION_VENV)
	$(IMITATION_VENV)/bin/pip install --quiet -c $< torch==2.13.0
	$(IMITATION_VENV)/bin/pip install --quiet -c $< imitation==1.0.1 "gymnasium[mujoco]==0.29.1"
	touch $@

# CQL against d3rlpy on a Hopper-v5 "medium" dataset. The dataset is collected once with a
# Hopper PPO checkpoint of about a quarter to a third of expert return (see docs/benchmarks.md):
#   make bench-cql-hopper HOPPER_CHECKPOINT=runs/hopper-ppo-0/checkpoints/iter_000075
# Then 10 seeds in two runs of 5 (about 50 min each) and the pooled table.
HOPPER_DATASET ?= hopper/medium-v0
bench-cql-hopper: install bench-d3rlpy-venv
	@set -e; \
	if ! $(BIN)/rlscale datasets info $(HOPPER_DATASET) > /dev/null 2>&1; then \
	    test -n "$(HOPPER_CHECKPOINT)" || { echo "set HOPPER_CHECKPOINT to collect $(HOPPER_DATASET)"; exit 1; }; \
	    $(BIN)/rlscale datasets collect --env Hopper-v5 --policy "$(HOPPER_CHECKPOINT)" \
	        --episodes 4000 --workers 2 --name $(HOPPER_DATASET); \
	fi; \
	$(BIN)/python benchmarks/cql_hopper.py --dataset $(HOPPER_DATASET) --seeds 0 1 2 3 4 \
	    --out benchmarks/results/cql_hopper_seeds0-4.json; \
	$(BIN)/python benchmarks/cql_hopper.py --dataset $(HOPPER_DATASET) --seeds 5 6 7 8 9 \
	    --out benchmarks/results/cql_hopper_seeds5-9.json; \
	$(BIN)/python benchmarks/cql_hopper.py --merge benchmarks/results/cql_hopper_seeds0-4.json \
	    benchmarks/results/cql_hopper_seeds5-9.json

# The generative family on the same data (collect it with bench-cql-hopper first): Diffusion-QL
# and BCQ, and d3rlpy's BCQ, 5 seeds, 10k updates each (about 55 min); the CQL rows they are
# compared with are bench-cql-hopper's (add cql to --algorithms to rerun them here too).
bench-generative-hopper: install bench-d3rlpy-venv
	$(BIN)/python benchmarks/cql_hopper.py --dataset $(HOPPER_DATASET) \
	    --algorithms diffusion_ql bcq --seeds 0 1 2 3 4 \
	    --out benchmarks/results/generative_hopper.json

clean:
	rm -rf $(VENV) $(D3RLPY_VENV) $(MBRL_VENV) $(IMITATION_VENV) runs .pytest_cache
