# Kubeflow for Poets: the verbs. `make pipeline` and `make test` set everything up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
LEARNER := $(VENV)/.learner
FULL := $(VENV)/.full
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: help setup setup-dev pipeline pipeline-docker images serve compile notebooks slides site browser lab test test-containers cluster-e2e security-scan lint format bench bench-serving results sample lock clean

help:  ## list the verbs
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 17

setup: $(LEARNER)  ## create .venv from this platform's learner lock (locks/); prints time and size

setup-dev: $(FULL)  ## the same, with the tests, linters and scanners (locks/<platform>/full.txt)

$(LEARNER): pyproject.toml $(wildcard locks/*/learner.txt)
	$(PYTHON) scripts/setup_env.py learner --venv $(VENV)
	touch $@

$(FULL): pyproject.toml $(wildcard locks/*/full.txt)
	$(PYTHON) scripts/setup_env.py full --venv $(VENV)
	touch $@ $(LEARNER)

pipeline: setup  ## run the pipeline locally (kfp.local) on the bundled synthetic sample, offline
	$(BIN)/crypto-pipeline run

images:  ## build the four step images as the compiled pipeline names them (REGISTRY=… TAG=…)
	bash scripts/build_images.sh

pipeline-docker: setup  ## the same pipeline, every step in its image with Docker (make images first)
	$(BIN)/crypto-pipeline run --runner docker

serve: setup  ## serve the latest run's model on http://127.0.0.1:8082 (KServe V1 protocol)
	$(BIN)/crypto-pipeline serve

compile: setup  ## regenerate crypto_pipeline.yaml, the pipeline to read and draw (images tagged by the bare version)
	$(BIN)/crypto-pipeline compile -o crypto_pipeline.yaml --tag $(VERSION)

notebooks: setup  ## execute every notebook headless (papermill, their defaults) into notebooks/executed/; prints the times
	$(BIN)/python scripts/run_notebooks.py

WEB := site/node_modules/.package-lock.json

$(WEB): site/package-lock.json  # reveal.js, require.js, jQuery: the decks' files, pinned
	cd site && npm ci --ignore-scripts --no-audit --no-fund

slides: notebooks $(WEB)  ## a reveal.js deck per notebook, from its executed copy: build/site/slides/
	$(BIN)/python scripts/build_site.py --slides

site: notebooks $(WEB)  ## the whole series as a static site with every output, and the decks: build/site/
	$(BIN)/python scripts/build_site.py

browser:  ## install Debian's chromium for the browser tests (root; the tests download no browser)
	command -v chromium > /dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; }

lab: setup  ## open JupyterLab on the notebooks, with the project's environment as the kernel
	JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
	  $(BIN)/jupyter lab --ServerApp.root_dir=. notebooks/01-introduction.ipynb

test: lint security-scan  ## lint, scan, then run every test and validate the notebooks (nbval)
	$(BIN)/pytest

test-containers: setup  ## build every image, push and pull it through a local registry, run the pipeline in them, the workshop image and its dev container (root; ~20 min)
	bash scripts/test_containers.sh

cluster-e2e: setup  ## on kind: KFP, KServe (KATIB=1: Katib), the images, a run, its predictor against local serving; timed, then deleted (KEEP=1 keeps it; needs Docker, kind, kubectl); make cluster-e2e --dry-run prints it all
	+bash scripts/cluster_e2e.sh $(if $(or $(DRY_RUN),$(findstring n,$(firstword -$(MAKEFLAGS)))),--dry-run)

CHECKOV := .tools/checkov/bin/checkov
CHECKOV_VERSION := 3.3.30

$(CHECKOV):  # its own venv: checkov's pins conflict with the project's
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

security-scan: $(CHECKOV)  ## checkov over the Kubernetes manifests and every Dockerfile
	$(CHECKOV) --skip-download --compact --quiet --framework kubernetes -d kubernetes-intro -d cluster
	$(CHECKOV) --skip-download --compact --quiet --framework dockerfile \
	  $$(git ls-files '*Dockerfile' | sed 's/^/-f /')

lint: setup-dev  ## ruff (code and notebooks); notebooks hold only checked outputs; actionlint and its shellcheck (workflows)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/clean_notebooks.py --check
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint

format: setup-dev  ## apply ruff's fixes and formatting; keep only the checked outputs in notebooks
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/python scripts/clean_notebooks.py

bench: setup  ## the Beam transform against pandas on 1,000,000 rows; its peak memory on 300 MB of one coin
	$(BIN)/python scripts/bench_transform.py

bench-serving: setup  ## latency of the model server (needs a finished `make pipeline`)
	$(BIN)/python scripts/bench_serving.py

results: setup  ## the README's results table: the default run on the sample, the real subset and each CSV in DATA=FOLDER
	$(BIN)/python scripts/results_table.py sample $(wildcard ../shared/data/crypto-markets-real-subset.csv) $(DATA)

sample: setup  ## regenerate the bundled synthetic sample
	$(BIN)/crypto-pipeline sample

lock: setup-dev  ## re-resolve every platform's locks (locks/) and conda files from pyproject.toml
	$(BIN)/python scripts/lock.py

clean:  ## remove run folders, the cache and the built site; keeps .venv and every registered model (a `models` folder; MODELS=delete: those too)
	@if [ "$(MODELS)" = delete ]; then rm -rf runs; \
	elif [ -d runs ]; then \
	  find runs -mindepth 1 ! -type d ! -path '*/models/*' -delete; \
	  find runs -mindepth 1 -depth -type d -empty ! -name models ! -path '*/models/*' -delete; \
	  if find runs -type d -name models | grep -q .; then \
	    echo "kept the registered models: $$(find runs -type d -name models | tr '\n' ' ')(make clean MODELS=delete removes them)"; fi; \
	fi
	rm -rf build
