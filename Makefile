# Kubeflow for Poets: the verbs. `make pipeline` and `make test` set everything up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
LEARNER := $(VENV)/.learner
FULL := $(VENV)/.full
# The version's one home: crypto_pipeline.__version__ (pyproject.toml reads it too).
VERSION := $(shell python3 scripts/image_tag.py --version)

.PHONY: help setup setup-dev pipeline pipeline-docker images serve compile check-compiled notebooks slides site browser lab test test-fast test-containers cluster-e2e security-scan lint typecheck format bench bench-serving bench-pipeline results sample lock clean

help:  ## list the verbs (times: the CI machine, 2 cores)
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 17

setup: $(LEARNER)  ## create .venv from this platform's learner lock (locks/); prints time and size (~2 min)

setup-dev: $(FULL)  ## the same, with the tests, linters and scanners (locks/<platform>/full.txt) (~1.5 min on top)

# setup_env.py writes the stamps (.full marks .learner too), and makes a second make that
# sets up the same venv at the same time wait for the first.
$(LEARNER): pyproject.toml $(wildcard locks/*/learner.txt)
	$(PYTHON) scripts/setup_env.py learner --venv $(VENV)

$(FULL): pyproject.toml $(wildcard locks/*/full.txt)
	$(PYTHON) scripts/setup_env.py full --venv $(VENV)

pipeline: setup  ## run the pipeline locally (kfp.local) on the bundled synthetic sample, offline (~1 min; cached: 3 s)
	$(BIN)/crypto-pipeline run

images:  ## build the four step images as the compiled pipeline names them (REGISTRY=… TAG=…) (~3 to 8 min)
	bash scripts/build_images.sh

pipeline-docker: setup  ## the same pipeline, every step in its image with Docker (make images first)
	$(BIN)/crypto-pipeline run --runner docker

serve: setup  ## serve the latest run's model on http://127.0.0.1:8082 (KServe V1 protocol)
	$(BIN)/crypto-pipeline serve

compile: setup  ## regenerate crypto_pipeline.yaml, the pipeline to read and draw (images tagged by the bare version) (~15 s)
	$(BIN)/crypto-pipeline compile -o crypto_pipeline.yaml --tag $(VERSION)

check-compiled:  ## fail when crypto_pipeline.yaml is not what `make compile` writes now (pre-commit runs it) (~15 s)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BIN)/crypto-pipeline compile -o "$$tmp/crypto_pipeline.yaml" --tag $(VERSION) > /dev/null && \
	if ! diff -u crypto_pipeline.yaml "$$tmp/crypto_pipeline.yaml" > "$$tmp/diff"; then \
	  head -40 "$$tmp/diff"; \
	  echo "error: crypto_pipeline.yaml is not the pipeline the code compiles now"; \
	  echo "  fix: make compile, and commit crypto_pipeline.yaml"; exit 1; \
	fi

notebooks: setup  ## execute every notebook headless (papermill, their defaults) into notebooks/executed/; prints the times (~2 min)
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

# pytest-xdist: the tests in several processes, each test file whole in one of them (its
# module fixtures made once).
# make test: three on two cores, as many of its tests wait; test-fast: one per core, as its
# tests compute.
# The files go out in tests/conftest.py's order (heaviest first), not xdist's (most tests).
PARALLEL = -n $(or $(TEST_PROCESSES),$(1)) --dist loadfile --no-loadscope-reorder

test: lint security-scan  ## lint, scan, then run every test and validate the notebooks (nbval), in 3 processes (TEST_PROCESSES=N) (~15 min)
	$(BIN)/pytest $(call PARALLEL,3) --durations=20

# The slow kinds are pyproject.toml's markers; tests/conftest.py marks the notebooks (nbval)
# and the tests named there. test-fast lists the slowest tests: mark what grows slow.
FAST := not pipeline_run and not notebook and not browser and not docker and not network and not slow and not drill

test-fast: setup-dev  ## the unit, pipeline and asset tests, none of the slow kinds (runs, notebooks, browser, Docker, servers, drills), a process per core; prints its time (~3 min)
	@SECONDS=0; $(BIN)/pytest $(call PARALLEL,auto) -q -p no:cacheprovider --durations=8 -m "$(FAST)"; \
	status=$$?; echo "make test-fast: $$SECONDS s (make test runs the slow kinds too)"; exit $$status

# The script runs make setup itself, once the step images' builds (which need no venv) have
# started: .ci/run starts it beside make setup-dev.
test-containers:  ## build every image, push and pull it through a local registry, run the pipeline in them, the workshop image and its dev container (root) (~15 min)
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

lint: setup-dev  ## ruff (code and notebooks); mypy over the package; notebooks hold only checked outputs; actionlint and its shellcheck (workflows)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python scripts/clean_notebooks.py --check
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint

typecheck: setup-dev  ## mypy over the pipeline's package alone ([tool.mypy] in pyproject.toml; make lint runs it too) (~1.5 min cold, seconds after)
	$(BIN)/mypy

format: setup-dev  ## apply ruff's fixes and formatting; keep only the checked outputs in notebooks
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/python scripts/clean_notebooks.py

bench: setup  ## the Beam transform against pandas on 1,000,000 rows; its peak memory on 300 MB of one coin
	$(BIN)/python scripts/bench_transform.py

bench-serving: setup  ## latency of the model server (needs a finished `make pipeline`)
	$(BIN)/python scripts/bench_serving.py

bench-pipeline: setup  ## a cold pipeline of BASELINE (a git ref, default HEAD) beside the working tree's: seconds per step, new/old (~4 min)
	$(BIN)/python scripts/bench_pipeline.py --baseline $(or $(BASELINE),HEAD)

results: setup  ## the README's results table: the default run on the sample, the real subset and each CSV in DATA=FOLDER
	$(BIN)/python scripts/results_table.py sample $(wildcard ../shared/data/crypto-markets-real-subset.csv) $(DATA)

sample: setup  ## regenerate the bundled synthetic sample
	$(BIN)/crypto-pipeline sample

lock: setup-dev  ## re-resolve every platform's locks (locks/) and conda files (environment.yml) from pyproject.toml (~30 s)
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
