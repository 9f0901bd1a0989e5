# make test: set up .venv and run the whole suite (lint, unit, kernels, notebooks, browser).
# make demo: set up .venv and open the quickstart in JupyterLab (or run it headless).
# make bench: the benchmark table; make notebooks: re-execute and store notebook outputs.
# make dist: the sdist and wheel in dist/ (what `pip install det_nb` installs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Exact versions the stored notebook outputs were made with: bit-identical re-runs.
# -qq prints errors only: a pip configured with extra index folders otherwise warns once
# for every package a folder lacks.
PIP_INSTALL := $(PY) -m pip install --quiet --quiet --constraint constraints.txt

.PHONY: test demo bench lint browser notebooks dist clean

$(PY):
	@echo "Setting up $(VENV) (first time only: a few minutes; about 5 GB for make test)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet --upgrade pip

$(VENV)/.test-installed: pyproject.toml constraints.txt | $(PY)
	$(PIP_INSTALL) --editable '.[test]'
	touch $@

$(VENV)/.demo-installed: pyproject.toml constraints.txt | $(PY)
	$(PIP_INSTALL) --editable '.[demo]'
	touch $@

# The browser test drives Debian's Chromium through Playwright (no browser download).
# Without Chromium it fails and says why; DET_NB_SKIP_BROWSER=1 skips it on purpose.
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$DET_NB_SKIP_BROWSER" = 1 ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install it (sudo apt-get install chromium), or skip" \
	    "the browser test with DET_NB_SKIP_BROWSER=1 make test"; fi; }

lint: $(VENV)/.test-installed
	$(PY) -m ruff check .

test: $(VENV)/.test-installed browser lint
	$(PY) -m pytest --nbval --nbval-current-env tests notebooks
	$(PY) -m pytest --det-verify notebooks

# Re-execute the notebooks in fresh kernels and store their outputs. TensorFlow's C++
# start-up log goes to the kernel's own stderr, not into the notebook, as under nbval
# (ipykernel stops capturing fd output inside pytest).
notebooks: $(VENV)/.test-installed
	for notebook in notebooks/*.ipynb; do \
	  $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --allow-errors \
	    --ExecutePreprocessor.record_timing=False \
	    --ExecutePreprocessor.extra_arguments='["--IPKernelApp.capture_fd_output=False"]' \
	    "$$notebook" || exit 1; \
	done

# Side-by-side ratios (det_nb against hand-written baselines); never part of make test.
bench: $(VENV)/.test-installed
	$(PY) benchmarks/run.py

demo: $(VENV)/.demo-installed
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] && [ "$(HEADLESS)" != 1 ]; then \
	  $(VENV)/bin/jupyter lab notebooks/quickstart.ipynb; \
	else \
	  $(PY) tools/run_notebook.py notebooks/quickstart.ipynb; \
	fi

# python -m build fetches the build backend (hatchling) into an isolated environment.
dist: | $(PY)
	$(PY) -c "import build" 2>/dev/null || $(PY) -m pip install --quiet --quiet build
	rm -rf dist
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis dist
