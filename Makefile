# The two commands of the README: `make demo` (main job) and `make test` (whole test suite).
# Both create a local virtual environment with the pinned CPU build of PyTorch; the package itself
# only asks for torch>=2.2, so GPU builds work when installed by hand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test bench docs validation install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e ".[test,plots,docs,cluster,data]"
	touch $(STAMP)

install: $(STAMP)

# The dropout SME at order 1 (tests the drift) and order 2 (tests the noise), each with the
# negative controls that must fail; a few minutes on two CPU cores. One PyTorch thread per process,
# on purpose (--threads 1, also smetool's default, and OMP_NUM_THREADS=1 for the libraries under
# it): the kernels are many small operations, and on a loaded 2-core machine two threads made the
# order-2 check take 194 s instead of 13 s, with identical tables.
demo: $(STAMP)
	@echo "make demo: one PyTorch thread per process (--threads 1, OMP_NUM_THREADS=1)"
	OMP_NUM_THREADS=1 $(BIN)/smetool verify dropout --threads 1 --out out/demo/order1
	OMP_NUM_THREADS=1 $(BIN)/smetool verify dropout --threads 1 --order 2 --out out/demo/order2

# Lint, types and layering first (seconds), then the suite.
test: $(STAMP)
	$(BIN)/ruff check smetool tests scripts benchmarks examples
	$(BIN)/mypy
	$(BIN)/python scripts/layers.py
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --durations=15

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_solvers.py
	$(BIN)/python benchmarks/bench_dropout.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_cluster.py

# Regenerates docs/validation.md and docs/validation.json (about 20 min on 2 CPU cores).
validation: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/validation.py

clean:
	rm -rf $(VENV) out build dist *.egg-info .pytest_cache .hypothesis
