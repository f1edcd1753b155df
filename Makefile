# Everything a fresh Debian machine needs, from these targets:
#   make test    system packages, a virtual environment, the build, then the whole test suite
#   make demo    the same set-up, then the main job on the embedded demo data
#   make bench   CPU benchmarks (PyTorch columns appear when torch is importable)
#   make fuzz    the libFuzzer harnesses for FUZZ_SECONDS each
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := gcc make libopenblas-dev python3-dev python3-venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZ_SECONDS ?= 60
CSRC := $(shell find csrc -name '*.c' -o -name '*.h' -o -name '*.cu' 2>/dev/null)

.PHONY: test demo bench fuzz build system clean

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

$(VENV)/.deps: pyproject.toml | system
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=64" "numpy>=1.25" wheel
	$(PY) -m pip install -q -e ".[test]" --no-build-isolation
	touch $@

build: $(VENV)/.deps
	$(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m pytest -q -n 2 tests

demo: build
	$(PY) -m affectfer demo

bench: build
	$(PY) benchmarks/bench_cpu.py

clean:
	rm -rf build $(VENV) affectfer/*.so *.egg-info
