# The two commands a new machine needs: `make demo` and `make test`. Both set everything up.
# `make demo` runs examples/<core>_demo.py (through `thrifty demo`), from a source checkout.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)
# torch's CUDA wheels are about 4 GB; a pip cache would hold a second copy on a disk that
# CI has already seen fill up.
export PIP_NO_CACHE_DIR := 1
# Benchmarks double as tests: run once each, untimed, under `make test`.
PYTEST_FLAGS ?= -q
RUST_SOURCES := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml

.PHONY: demo test lint fmt build bench bench-slow-links soak wheel wheel-check neon clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# A stale extension would hide a failed build, so it goes before every rebuild.
build: $(STAMP)
	rm -f python/thrifty/_native*.so
	$(BIN)/maturin develop --release -q

demo: build
	$(BIN)/thrifty demo

lint: build
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches examples
	$(BIN)/ruff format --check python tests benches examples
	$(BIN)/mypy --strict python/
	$(BIN)/python -m mypy.stubtest thrifty._native

test: lint
	cargo test --workspace --exclude thrifty-py
	$(BIN)/pytest $(PYTEST_FLAGS) -m "not slow" tests
	$(BIN)/pytest $(PYTEST_FLAGS) --doctest-modules python/thrifty benches/workloads \
		benches/allreduce_vs_gloo.py benches/allreduce_shaped.py benches/diloco_vs_ddp.py \
		benches/adadagrad_ddp.py
	$(BIN)/pytest $(PYTEST_FLAGS) benches --benchmark-disable
	$(MAKE) wheel-check

fmt: $(STAMP)
	cargo fmt --all
	$(BIN)/ruff format python tests benches examples
	$(BIN)/ruff check --fix python tests benches examples

bench: build
	$(BIN)/pytest benches --benchmark-only --benchmark-json=benches/.last.json -q
	$(BIN)/python benches/ratios.py benches/.last.json
	$(MAKE) bench-slow-links

# The all-reduce, the DiLoCo methods and AdAdaGrad under DDP on a rate-limited link (a
# network namespace whose loopback goes through tc's tbf; about an hour). They need root and
# tc: without them they say why and exit 2, which skips them here rather than failing.
bench-slow-links: build
	for run in "benches/allreduce_shaped.py --rates 100mbit 1gbit --sizes 16MB 64MB --world 4" \
		"-m thrifty.cli bench diloco --methods ddp diloco streaming-fp4 noloco --link-rate 100mbit" \
		"-m thrifty.cli bench diloco --methods ddp diloco streaming-fp4 noloco --link-rate 1gbit" \
		"benches/adadagrad_ddp.py --link-rate 100mbit --seeds 0 1 2"; do \
		rc=0; $(BIN)/python $$run || rc=$$?; \
		if [ $$rc -eq 2 ]; then echo "skipped: $$run (see the reason above)"; \
		elif [ $$rc -ne 0 ]; then exit $$rc; fi; \
	done

soak: build
	$(BIN)/pytest $(PYTEST_FLAGS) -m slow tests --timeout=3600

wheel: $(STAMP)
	rm -rf dist
	$(BIN)/maturin build --release --out dist -q

# Install the wheel into a clean environment, so a packaging mistake (a missing kernel or
# stub) fails here rather than on a user's machine.
wheel-check: wheel
	rm -rf build/wheel-venv
	$(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install -q dist/*.whl
	cd build && wheel-venv/bin/python ../tests/packaging_check.py

# The NEON popcount kernels, compiled for aarch64 and run under qemu against the scalar
# kernel. Not part of `make test`: it needs a cross toolchain and about 3 minutes.
NEON_TARGET := aarch64-unknown-linux-gnu
neon:
	command -v qemu-aarch64 >/dev/null || apt-get install -y -q --no-install-recommends \
		qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
	rustup target add $(NEON_TARGET)
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
		cargo test --release --target $(NEON_TARGET) -p thrifty-hamming

clean:
	rm -rf $(VENV) target dist build python/thrifty/_native*.so
