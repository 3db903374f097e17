# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is pinned here (not in pyproject.toml) so that a fresh machine installs the
# small CPU wheel instead of a multi-GB CUDA build. Real users keep the loose range of pyproject.toml.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint typecheck docs bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ebmguide demo --out runs/demo

# OMP_WAIT_POLICY=PASSIVE: torch's OpenMP threads sleep instead of spinning at barriers, which
# keeps the many small tensors of the suite fast on a 2-core machine shared with other work.
test: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q

test-slow: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check ebmguide tests examples benchmarks
	$(VENV)/bin/mypy

# NO_MKDOCS_2_WARNING: mkdocs-material prints a banner about a future MkDocs 2.0 on every build;
# it is about the tool, not this site, and would hide real warnings. --strict fails on those.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The benchmark's own environment: the pinned CPU torch, ebmguide, and the two libraries it is
# compared with. torchebm and ebmkit go in with --no-deps: each requires an unpinned torch, which
# would pull a multi-GB CUDA build here; their other requirements are optional extras.
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_OTHERS ?= torchebm==0.8.9 ebmkit==0.16.0
BENCH_ARGS ?= --quick

$(BENCH_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install -q --upgrade pip
	$(BENCH_PY) -m pip install -q "$(TORCH_PIN)"
	$(BENCH_PY) -m pip install -q -e .
	$(BENCH_PY) -m pip install -q --no-deps $(BENCH_OTHERS)
	$(BENCH_PY) -c "import torch; assert torch.version.cuda is None, torch.__version__"
	touch $(BENCH_STAMP)

# `make bench` prints the tables of docs/performance.md (a few minutes on 2 cores);
# `make bench BENCH_ARGS=` runs the full-size version.
bench: $(BENCH_STAMP)
	$(BENCH_PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) site build *.egg-info
