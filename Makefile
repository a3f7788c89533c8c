# Two commands for a new user: `make book` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := data/synthetic
NOTEBOOKS := $(sort $(wildcard book/[0-9][0-9]_*.ipynb))

.PHONY: venv test test-all book notebooks html data lint bench clean repo-url

venv: $(STAMP)

# Re-install only when the package metadata changes; a plain re-run is instant.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,dev]"
	touch $(STAMP)

# pytest, then nbval re-executes every committed notebook (training included: about 10 minutes
# on 2 CPU cores) and compares the outputs of the cells marked NBVAL_CHECK_OUTPUT.
test: venv
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider book/

# Slow tests (longer training runs) too.
test-all: venv
	$(PY) -m pytest -q -m "slow or not slow" tests

data: venv
	test -d $(DATA)/AerialImageDataset || $(VENV)/bin/plinknet synth --out $(DATA) --seed 0

# Execute every chapter in order with papermill (outputs are committed), then build the HTML.
notebooks: venv data
	@for nb in $(NOTEBOOKS); do \
		echo "== papermill $$nb"; \
		$(VENV)/bin/papermill --cwd book -k python3 $$nb $$nb || exit 1; \
	done

html: venv
	$(VENV)/bin/jupyter-book build . -W --keep-going

book: notebooks html

lint: venv
	$(VENV)/bin/ruff check plinknet tests benchmarks

bench: venv
	$(VENV)/bin/plinknet bench model

# After changing repository.url in _config.yml: make the Colab install cells follow.
repo-url: venv
	$(PY) book/set_repo_url.py

clean:
	rm -rf _build runs
