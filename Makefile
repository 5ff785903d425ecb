# gfnlm — build, demo and tests. `make` sets up a fresh Debian 12 machine, builds the release library and runs the
# demo; `make test` builds and runs every test (Swift, C against the installed header + .so, Python via ctypes).
SHELL := /bin/bash
.DEFAULT_GOAL := all

ROOT := $(CURDIR)
# dpkg-dev: `apt-get source` of protobuf for the static, position-independent protobuf-lite (mk/protobuf.mk);
# cmake: the install test's find_package(gfnlm) consumer
DEB_PACKAGES := libopenblas-dev libprotobuf-dev pkg-config dpkg-dev cmake
BUILD := $(ROOT)/build
LIB := $(BUILD)/libgfnlm.so
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
SWIFT ?= swift
JOBS ?= 2
SWIFT_SOURCES := $(shell find Sources include -type f) Package.swift
# Versions come from the public header, the one place they are written: GFN_VERSION_* name the release,
# GFN_ABI_VERSION the soname (libgfnlm.so.<ABI>, bumped when the C ABI breaks).
header_number = $(shell sed -n 's/^.define $(1) \([0-9][0-9]*\).*/\1/p' $(ROOT)/include/gfnlm.h)
GFN_VERSION := $(call header_number,GFN_VERSION_MAJOR).$(call header_number,GFN_VERSION_MINOR).$(call header_number,GFN_VERSION_PATCH)
GFN_ABI := $(call header_number,GFN_ABI_VERSION)
SONAME := libgfnlm.so.$(GFN_ABI)
# Release artifact: Swift runtime linked in statically (loads where no Swift toolchain is installed), a soname,
# and only gfn_* symbols exported.
RELEASE_FLAGS := -c release --product gfnlm --scratch-path $(ROOT)/.build-release -j $(JOBS) \
	-Xswiftc -static-stdlib -Xswiftc -no-toolchain-stdlib-rpath \
	-Xlinker --version-script=$(ROOT)/include/gfnlm.map -Xlinker -soname=$(SONAME)

include mk/protobuf.mk

.PHONY: all deps lib demo test abi-check-test kernel-test-static quant-kernel-test workerpool-test bench-forkjoin swift-test c-test py-test examples-test clean venv bench

all: deps lib demo

## Debian packages: installed when running as root, otherwise the exact command is printed.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  else \
	    echo "Missing Debian packages:$$missing"; \
	    echo "Run: sudo apt-get update && sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

lib: $(LIB)

# protobuf-lite linked in statically (PROTOBUF_ARCHIVE, mk/protobuf.mk). build/libgfnlm.so.<ABI> (the soname, what
# programs linked with -lgfnlm load) points at build/libgfnlm.so.
$(LIB): $(SWIFT_SOURCES) $(PROTOBUF_ARCHIVE) | deps
	GFNLM_PROTOBUF_LITE_ARCHIVE=$(PROTOBUF_ARCHIVE) $(SWIFT) build $(RELEASE_FLAGS)
	@mkdir -p $(BUILD)
	cp $(ROOT)/.build-release/release/libgfnlm.so $(LIB)
	ln -sf libgfnlm.so $(BUILD)/$(SONAME)
	@echo "built $(LIB) (version $(GFN_VERSION), soname $(SONAME))"

## Python environment for the bindings' tests and the examples (numpy, pytest; see bindings/python/requirements-test.txt)
venv: $(VENV)/.ok

$(VENV)/.ok: bindings/python/requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bindings/python/requirements-test.txt
	@touch $@

demo: lib venv
	GFNLM_LIBRARY=$(LIB) PYTHONPATH=$(ROOT)/bindings/python $(PY) examples/python/random_numbers.py --plot $(BUILD)/random_numbers.png

test: deps lib venv mpi-venv abi-check-test kernel-test-static quant-kernel-test workerpool-test swift-test c-test fuzz-smoke py-test examples-test install-test
	@echo "all tests passed"

## The exports in Sources/GFNLMC implement include/gfnlm.h's declarations (`@c @implementation`), so the compiler
## refuses a signature that drifts from the header; this proves the check bites (mismatched declarations, seconds).
abi-check-test:
	SWIFTC=$(SWIFT)c Tests/ABI/check_bites.sh

## The bf16 kernels' standalone test, linked statically so build/kernel-test-static can be copied to and run on any
## x86-64 Linux machine with AVX512-BF16 (here, without it, it checks the self-check's comparator and skips the rest).
KERNEL_TEST_SOURCES := Tests/Kernels/bf16_kernel_test.c Sources/CKernels/ckernels.c Sources/CKernels/bf16check.c
$(BUILD)/kernel-test-static: $(KERNEL_TEST_SOURCES) Sources/CKernels/bf16_internal.h Sources/CKernels/include/ckernels.h
	@mkdir -p $(BUILD)
	gcc -std=c11 -O2 -march=x86-64-v3 -Wall -Wextra -Werror -static -ISources/CKernels -ISources/CKernels/include \
	  $(KERNEL_TEST_SOURCES) -lm -pthread -o $@

kernel-test-static: $(BUILD)/kernel-test-static
	$(BUILD)/kernel-test-static

## The block-quantized kernels' C layer: fp16 scale conversions against F16C, every format's products against double
## precision, AVX2 against portable bit for bit, row invariance, the VNNI panel kernels against AVX2 bit for bit
## (emulated here; the real ones where the CPU has them), the VNNI self-check (seconds). Linked statically, so that
## build/quant-kernel-test can be copied to and run on any x86-64 Linux machine with AVX-VNNI or AVX512-VNNI.
QUANT_TEST_SOURCES := Tests/Kernels/quant_kernel_test.c Sources/CKernels/quant.c Sources/CKernels/quant_int.c \
  Sources/CKernels/quant_int_panel.c Sources/CKernels/quant_int_vnni.c
$(BUILD)/quant-kernel-test: $(QUANT_TEST_SOURCES) Sources/CKernels/quant_internal.h Sources/CKernels/quant_panel.h \
  Sources/CKernels/quant_int_vnni_body.h Sources/CKernels/include/ckernels.h
	@mkdir -p $(BUILD)
	gcc -std=c11 -O2 -march=x86-64-v3 -Wall -Wextra -Werror -ISources/CKernels -ISources/CKernels/include \
	  $(QUANT_TEST_SOURCES) -static -pthread -lm -o $@

quant-kernel-test: $(BUILD)/quant-kernel-test
	$(BUILD)/quant-kernel-test

## The fork-join worker pool under stress (one and four callers), plain and under ThreadSanitizer (seconds).
WORKERPOOL_TEST_SOURCES := Tests/Kernels/workerpool_test.c Sources/CKernels/workerpool.c
$(BUILD)/workerpool-test: $(WORKERPOOL_TEST_SOURCES) Sources/CKernels/include/workerpool.h
	@mkdir -p $(BUILD)
	gcc -std=c11 -O2 -Wall -Wextra -Werror -pthread -ISources/CKernels/include $(WORKERPOOL_TEST_SOURCES) -o $@
$(BUILD)/workerpool-test-tsan: $(WORKERPOOL_TEST_SOURCES) Sources/CKernels/include/workerpool.h
	@mkdir -p $(BUILD)
	gcc -std=c11 -O1 -g -fsanitize=thread -Wall -Wextra -Werror -pthread -ISources/CKernels/include \
	  $(WORKERPOOL_TEST_SOURCES) -o $@

workerpool-test: $(BUILD)/workerpool-test $(BUILD)/workerpool-test-tsan
	$(BUILD)/workerpool-test
	TSAN_OPTIONS=halt_on_error=1 $(BUILD)/workerpool-test-tsan

swift-test: | deps
	$(SWIFT) build --build-tests -j $(JOBS)
	$(SWIFT) test --skip-build

C_TESTS := $(wildcard Tests/C/test_*.c)
C_BINS := $(patsubst Tests/C/%.c,$(BUILD)/tests/%,$(C_TESTS))

$(BUILD)/tests/%: Tests/C/%.c Tests/C/check.h Tests/C/hostile_api.h include/gfnlm.h $(LIB)
	@mkdir -p $(BUILD)/tests
	gcc -std=c11 -O1 -g -Wall -Wextra -Werror -Iinclude $< -L$(BUILD) -lgfnlm -Wl,-rpath,$(BUILD) -lpthread -o $@

c-test: $(C_BINS)
	@set -e; for t in $(C_BINS); do echo "== $$t"; (cd $(ROOT) && $$t); done

py-test: lib venv
	cd $(ROOT) && GFNLM_LIBRARY=$(LIB) PYTHONPATH=$(ROOT)/bindings/python $(PY) -m pytest -q bindings/python/tests

EXAMPLE_MODEL := Tests/Fixtures/gpt2-realvocab/legacy17
EXAMPLE_TOKENIZER := Tests/Fixtures/tokenizer

$(BUILD)/examples/%: examples/c/%.c include/gfnlm.h $(LIB)
	@mkdir -p $(BUILD)/examples
	gcc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude $< -L$(BUILD) -lgfnlm -Wl,-rpath,'$$ORIGIN/..' -o $@

DEMO_MODEL := models/demo-gpt2

## C examples (the Python examples' short configurations run inside the Python tests, test_examples_*.py): generate
## on a fixture, train_sampler (a reward written in C, adapter saved) in its short form on the demo model, then the
## release .so with the Swift toolchain hidden.
examples-test: $(BUILD)/examples/generate $(BUILD)/examples/train_sampler
	$(BUILD)/examples/generate $(EXAMPLE_MODEL) "Hello world" $(EXAMPLE_TOKENIZER)
	@if [ -f $(DEMO_MODEL)/model.onnx ]; then \
	  echo "$(BUILD)/examples/train_sampler $(DEMO_MODEL) 6 $(BUILD)/examples/one-comma-adapter"; \
	  $(BUILD)/examples/train_sampler $(DEMO_MODEL) 6 $(BUILD)/examples/one-comma-adapter || exit 1; \
	else echo "(skipped train_sampler: the demo model $(DEMO_MODEL)/model.onnx is absent)"; fi
	@if [ "$$(id -u)" = 0 ] && command -v unshare >/dev/null && [ -d /opt/swift ]; then \
	  echo "== running the C example with /opt/swift hidden (tmpfs over it, private mount namespace)"; \
	  unshare -m sh -c 'mount -t tmpfs none /opt/swift && ! test -e /opt/swift/usr/lib/swift && \
	    $(BUILD)/examples/generate $(EXAMPLE_MODEL) "Hello world" $(EXAMPLE_TOKENIZER)' || exit 1; \
	else echo "(skipped the no-Swift-toolchain check: needs root and unshare)"; fi

## Benchmarks side by side with onnxruntime and PyTorch (sets up benchmarks/.venv and the models on first use;
## not part of `make test`). The last line of output is key=value ratios.
bench: lib
	python3 benchmarks/run.py

## libdispatch's dispatch_apply against the worker pool on the same synthetic regions (seconds; not in `make test`;
## the Swift toolchain's clang, whose libdispatch headers need it).
SWIFT_TOOLCHAIN_BIN = $(dir $(realpath $(shell command -v $(SWIFT))))
SWIFT_TOOLCHAIN_LIB = $(SWIFT_TOOLCHAIN_BIN)../lib/swift
bench-forkjoin:
	@mkdir -p $(BUILD)
	$(SWIFT_TOOLCHAIN_BIN)clang -std=gnu11 -O2 -Wall -Wextra -pthread -ISources/CKernels/include -I$(SWIFT_TOOLCHAIN_LIB) \
	  benchmarks/forkjoin/forkjoin.c Sources/CKernels/workerpool.c -L$(SWIFT_TOOLCHAIN_LIB)/linux -ldispatch \
	  -Wl,-rpath,$(SWIFT_TOOLCHAIN_LIB)/linux -o $(BUILD)/forkjoin-bench
	$(BUILD)/forkjoin-bench

include mk/reliability.mk
include mk/install.mk
include mk/mpi.mk

clean:
	rm -rf $(BUILD) .build .build-release .build-asan .build-ubsan .build-tsan

## also the protobuf source and archive (rebuilt by the next `make lib`, a few minutes)
distclean: clean
	rm -rf .build-deps
