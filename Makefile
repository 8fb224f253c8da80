# The README's commands. Every target creates the environment it needs from the lock file.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
# PyTorch (the torchscript flavor and its tests) stays outside requirements.lock: PyPI's
# torch is a CUDA build of several GB, so neither uv nor the lock may resolve it. pip
# installs the CPU build (the +cpu pin never matches PyPI's) from a local wheel in
# /opt/wheels when there is one, from PyTorch's CPU index otherwise. The lock constrains
# torch's dependencies, so no locked package changes version; those it does not hold are
# pinned here.
TORCH := torch==2.13.0+cpu setuptools==84.2.1 sympy==1.14.0 mpmath==1.3.0 networkx==3.6.1
TORCH_FROM := $(if $(wildcard /opt/wheels/torch-*.whl),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: venv browser console dist screenshots quickstart test lint typecheck unit bench lock clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --constraint requirements.lock $(TORCH_FROM) $(TORCH)
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The console first: the quickstart ends by pointing at its pages.
quickstart: $(STAMP) console
	$(BIN)/python examples/quickstart.py

# The import direction (core <- compute <- domains <- runtime <- server/client/cli) is a
# test that reads every import statement; it runs here too, before the slow suites.
lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/architecture

typecheck: $(STAMP)
	$(BIN)/mypy src

# The console's browser tests drive Debian's Chromium (Playwright never downloads one).
browser:
	command -v chromium >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

# The web console: npm installs the locked front-end libraries (uPlot, Preact+htm) and
# copies them with console/src into src/modelyard/console/static (served at /).
console: src/modelyard/console/static/.built

src/modelyard/console/static/.built: console/package-lock.json console/build.mjs $(wildcard console/src/*.* console/src/pages/*.js)
	cd console && npm ci --no-audit --no-fund --loglevel=error && node build.mjs
	touch $@

# The sdist and the wheel, in dist/, both carrying the built console (hatch_build.py
# builds it too when it is missing or stale; here it is built first, as for `make test`).
dist: $(STAMP) console
	$(BIN)/python -m hatchling build -d dist

screenshots: $(STAMP) console browser
	$(BIN)/python scripts/screenshots.py

unit: $(STAMP) browser console
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# BentoML joins the serving benchmark when its environment installs (a failure is ignored:
# bench_serving.py then says why it left BentoML out).
bench: $(STAMP)
	-$(MAKE) --no-print-directory bench-bentoml-venv
	$(BIN)/python -m benchmarks.run_all

# BentoML for the serving benchmark, in its own environment (never in requirements.lock:
# its dependency set is large); bench_serving.py skips BentoML while this is absent.
.PHONY: bench-bentoml-venv
bench-bentoml-venv: $(STAMP)
	test -x .venv-bentoml/bin/python || $(UV) venv -q --python $(BIN)/python .venv-bentoml
	$(UV) pip install -q --python .venv-bentoml/bin/python -r benchmarks/bentoml/requirements.txt

# Regenerate the lock file from pyproject.toml (needs network to PyPI).
lock: $(STAMP)
	$(UV) pip compile pyproject.toml --extra postgres --extra s3 --extra pandas --extra polars --extra algorithms --extra ray --extra onnx --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
