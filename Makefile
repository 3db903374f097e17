# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is pinned here (not in pyproject.toml) so that a fresh machine installs the
# small CPU wheel instead of a multi-GB CUDA build. Real users keep the loose range of pyproject.toml.
TORCH_PIN ?= torch==2.13.0
# Two stamps: the package with its metrics extra (what `make demo` needs) and the
# development tools on top of it (tests, linters, docs; about 45 s more).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint typecheck docs docs-assets browser bench clean

$(RUN_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile "$(TORCH_PIN)"
	$(PY) -m pip install -q --no-compile -e ".[metrics]"
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q --no-compile -e ".[dev,docs]"
	touch $(STAMP)

install: $(STAMP)

# GOMP_SPINCOUNT=10000: torch's OpenMP threads spin briefly at a barrier, then sleep. On an idle
# 2-core machine the demo's iterations ran 1.3-1.5x as fast as with the PASSIVE policy that
# `import ebmguide` sets otherwise; under load they are slower (docs/performance.md).
demo: $(RUN_STAMP)
	GOMP_SPINCOUNT=10000 $(VENV)/bin/ebmguide demo --out runs/demo

# What the built site needs in the reader's browser, bundled so that it works with no network and
# opened from disk (file://); fetched from the npm registry at pinned versions, each checked against
# its SHA-256, into docs/javascripts/vendor/ (not in git), with its licence. The npm packages are
# the projects' own distributions (no PyPI package ships MathJax 3 on its own), and npm comes with
# this machine's Node.js; mkdocs-material's `offline` plugin does the rest. Why these two:
# - MathJax: its single-file build with every TeX extension and SVG output (no font files to load).
# - iframe-worker's shim: mkdocs-material's `offline` plugin runs the search worker through it
#   (a page from disk may not start a web worker); left to itself the plugin links it from a CDN.
# - Mermaid (diagrams): mkdocs-material links it from a CDN unless it is already loaded;
#   docs/javascripts/mermaid-offline.js loads this copy on the pages that hold a diagram.
VENDOR := docs/javascripts/vendor
MATHJAX_JS := $(VENDOR)/mathjax/tex-svg-full.js
IFRAME_WORKER_JS := $(VENDOR)/iframe-worker/shim.js
MERMAID_JS := $(VENDOR)/mermaid/mermaid.min.js

# $(call npm_file,NAME,VERSION,SHA256,FILE IN THE PACKAGE,DESTINATION)
define npm_file
	@command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q npm)
	rm -rf $(5).tmp && mkdir -p $(5).tmp $(dir $(5))
	cd $(5).tmp && npm pack --silent $(1)@$(2) >/dev/null
	cd $(5).tmp && echo "$(3)  $(1)-$(2).tgz" | sha256sum -c --quiet
	tar xzf $(5).tmp/$(1)-$(2).tgz -C $(5).tmp package/$(4) package/LICENSE
	mv $(5).tmp/package/LICENSE $(dir $(5))LICENSE
	mv $(5).tmp/package/$(4) $(5)
	rm -rf $(5).tmp
endef

$(MATHJAX_JS):
	$(call npm_file,mathjax,3.2.2,1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09,es5/tex-svg-full.js,$@)

$(IFRAME_WORKER_JS):
	$(call npm_file,iframe-worker,1.0.4,e8c5d12d87829c503afba01d67772ea9f4aba5b7ae57a0c98e1917711030efbb,shim/index.js,$@)

$(MERMAID_JS):
	$(call npm_file,mermaid,11.9.0,457d14c241bf63fdca6fd6ef0463d3a15f2061496429769c01b28c9203442320,dist/mermaid.min.js,$@)

docs-assets: $(MATHJAX_JS) $(IFRAME_WORKER_JS) $(MERMAID_JS)

# The offline-docs test (tests/test_docs_offline.py) drives Debian's headless Chromium; installed
# here when missing (as root, as in CI). CHROMIUM names another binary.
CHROMIUM ?= chromium
browser:
	@command -v $(CHROMIUM) >/dev/null || (apt-get update -q && apt-get install -y -q chromium) \
		|| (echo "make: install Debian's chromium (apt-get install chromium) or set CHROMIUM=" >&2; \
		    exit 1)

# OMP_WAIT_POLICY=PASSIVE: torch's OpenMP threads sleep instead of spinning at barriers, which
# keeps the many small tensors of the suite fast on a 2-core machine shared with other work.
# TEST_WORKERS: pytest-xdist processes. Many of the slow tests wait on subprocesses (torchrun,
# signals, the docs build, the browser), so two workers on 2 cores ran the suite in 356 s against
# 518 s in one process (docs/performance.md); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP) docs-assets browser
	OMP_WAIT_POLICY=PASSIVE CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -n $(TEST_WORKERS)

test-slow: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check ebmguide tests examples benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# NO_MKDOCS_2_WARNING: mkdocs-material prints a banner about a future MkDocs 2.0 on every build;
# it is about the tool, not this site, and would hide real warnings. --strict fails on those.
docs: $(STAMP) docs-assets
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

# `make bench` prints the tables of docs/performance.md (a few minutes on 2 cores, plus about six
# minutes of CPU time for the iteration-floor row); `make bench BENCH_ARGS=` runs the full-size
# version. On a GPU run `python -m benchmarks.run --quick --device cuda` from an environment with a
# CUDA build of torch (.venv-bench holds the CPU build).
bench: $(BENCH_STAMP)
	$(BENCH_PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) site build *.egg-info $(VENDOR)
