# Reliability targets, included by the top-level Makefile. See docs/reliability.md and fuzz/REPORT.md.
#
#   make fuzz-smoke           replays the committed fuzz corpus and crash regressions through every target (no
#                             libFuzzer; part of `make test`, well under a minute)
#   make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS="onnx tokenize ..."]
#                             libFuzzer + AddressSanitizer, each target in turn for FUZZ_SECONDS; new inputs go to
#                             fuzz/corpus/<target>, crashes to build/fuzz/artifacts/<target>
#   make crash-test [CRASH_ITERATIONS=100]
#                             the SIGKILL test: kills a training + checkpointing child at random moments
#   make stress [STRESS_ROUNDS=10 STRESS_THREADS=8]
#                             the concurrency stress test, longer
#   make sanitize             the library built with -sanitize=address and with -sanitize=undefined (Swift and
#                             its C/C++ shims), the C ABI tests run against each (built with clang and the same
#                             runtime); the stress test with -sanitize=thread; valgrind memcheck over the C tests
#                             against the release library

FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= onnx tokenizer_files tokenize safetensors peft checkpoint replay json
CRASH_ITERATIONS ?= 100
STRESS_ROUNDS ?= 10
STRESS_THREADS ?= 8
FUZZ_BIN := $(BUILD)/fuzz/gfnlm_fuzz
FUZZ_REPLAY := $(BUILD)/fuzz/gfnlm_fuzz_replay
FUZZ_HARNESS := $(wildcard fuzz/harness/*.swift) fuzz/build.sh
# the fuzz binaries hold the Swift core and its C/C++ shims (not the C ABI layer)
FUZZ_SOURCES := $(shell find Sources/GFNLM Sources/CONNX Sources/CKernels -type f)
CLANG := /opt/swift/usr/bin/clang
SAN_DIR := $(BUILD)/sanitize
# C tests that make sense under the sanitizers and valgrind (test_crash re-executes itself and kills its child:
# it runs in `make crash-test`, not here).
SAN_TESTS := $(filter-out test_crash,$(patsubst Tests/C/%.c,%,$(C_TESTS)))

.PHONY: fuzz fuzz-smoke fuzz-build crash-test stress sanitize sanitize-asan sanitize-ubsan sanitize-tsan valgrind \
	valgrind-deps

## ------------------------------------------------------------------------------------------------ fuzzing

# The replay binary links the debug build's objects (made by `swift build --build-tests`, as in swift-test).
$(FUZZ_REPLAY): $(FUZZ_HARNESS) $(SWIFT_SOURCES)
	$(SWIFT) build --build-tests -j $(JOBS)
	fuzz/build.sh replay

fuzz-smoke: $(FUZZ_REPLAY)
	@set -e; start=$$(date +%s); for t in $(FUZZ_TARGETS); do \
	  dirs="fuzz/corpus/$$t"; [ -d fuzz/regressions/$$t ] && dirs="$$dirs fuzz/regressions/$$t"; \
	  GFNLM_FUZZ_ROOT=$(ROOT) GFNLM_FUZZ_REPLAY_TIMEOUT=30 $(FUZZ_REPLAY) $$t $$dirs; \
	done; echo "fuzz-smoke: every corpus replayed in $$(( $$(date +%s) - start )) s"

$(FUZZ_BIN): $(FUZZ_HARNESS) $(FUZZ_SOURCES)
	fuzz/build.sh libfuzzer

fuzz-build: $(FUZZ_BIN)

# One target at a time (the machine's cores are shared); -rss_limit_mb catches unbounded allocations, -timeout hangs.
fuzz: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t $(BUILD)/fuzz/artifacts/$$t; rm -f $(BUILD)/fuzz/artifacts/$$t/*; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  GFNLM_FUZZ_ROOT=$(ROOT) SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 $(BUILD)/fuzz/fuzz_$$t fuzz/corpus/$$t \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=3072 -malloc_limit_mb=2048 -timeout=30 \
	    -dict=fuzz/dict/sections.dict -artifact_prefix=$(BUILD)/fuzz/artifacts/$$t/ -print_final_stats=1 \
	    2>&1 | tee $(BUILD)/fuzz/$$t.log | grep -E "^#[0-9]+.*(pulse|DONE)|ERROR|SUMMARY|stat::" || true; \
	  if ls $(BUILD)/fuzz/artifacts/$$t/ 2>/dev/null | grep -q .; then \
	    echo "fuzz_$$t: crashes in $(BUILD)/fuzz/artifacts/$$t"; exit 1; fi; \
	done

## ------------------------------------------------------------------------------------------------ crashes, threads

crash-test: $(BUILD)/tests/test_crash
	cd $(ROOT) && $(BUILD)/tests/test_crash $(CRASH_ITERATIONS)

stress: $(BUILD)/tests/test_stress
	cd $(ROOT) && $(BUILD)/tests/test_stress $(STRESS_ROUNDS) $(STRESS_THREADS)

## ------------------------------------------------------------------------------------------------ sanitizers

# The library with a sanitizer in the Swift code ($(2): swiftc flags) and in the C/C++ shims (debug, Swift runtime
# shared), and the C tests built by the toolchain's clang so that one sanitizer runtime serves the whole process.
# Swift has no -sanitize=undefined on Linux (its debug build traps on overflow and out-of-bounds access itself):
# the UBSan build instruments the C/C++ shims and the C tests.
define SANITIZED_LIB
$(SAN_DIR)/$(1)/libgfnlm.so: $(SWIFT_SOURCES)
	$(SWIFT) build --product gfnlm --scratch-path $(ROOT)/.build-$(1) -j $(JOBS) \
	  $(2) -Xcc -fsanitize=$(3) -Xcxx -fsanitize=$(3) -Xlinker --version-script=$(ROOT)/include/gfnlm.map
	@mkdir -p $(SAN_DIR)/$(1)
	cp $(ROOT)/.build-$(1)/debug/libgfnlm.so $$@

$(SAN_DIR)/$(1)/test_%: Tests/C/test_%.c include/gfnlm.h $(SAN_DIR)/$(1)/libgfnlm.so
	$(CLANG) -std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=$(3) -Wall -Wextra -Werror -Iinclude $$< \
	  -L$(SAN_DIR)/$(1) -lgfnlm -Wl,-rpath,$(SAN_DIR)/$(1) -L/opt/swift/usr/lib/swift/linux -ldispatch -lBlocksRuntime \
	  -Wl,-rpath,/opt/swift/usr/lib/swift/linux -lpthread -lm -o $$@
endef
$(eval $(call SANITIZED_LIB,asan,-Xswiftc -sanitize=address,address))
$(eval $(call SANITIZED_LIB,ubsan,,undefined))
$(eval $(call SANITIZED_LIB,tsan,-Xswiftc -sanitize=thread,thread))

sanitize-asan: $(patsubst %,$(SAN_DIR)/asan/%,$(SAN_TESTS))
	@set -e; for t in $(SAN_TESTS); do echo "== asan $$t"; \
	  GFNLM_NO_RLIMIT=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(ROOT)/Tests/Sanitize/lsan.supp \
	  $(SAN_DIR)/asan/$$t > $(SAN_DIR)/asan-$$t.log 2>&1 || { tail -60 $(SAN_DIR)/asan-$$t.log; exit 1; }; \
	  tail -1 $(SAN_DIR)/asan-$$t.log; done

sanitize-ubsan: $(patsubst %,$(SAN_DIR)/ubsan/%,$(SAN_TESTS))
	@set -e; for t in $(SAN_TESTS); do echo "== ubsan $$t"; \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(SAN_DIR)/ubsan/$$t > $(SAN_DIR)/ubsan-$$t.log 2>&1 \
	    || { tail -60 $(SAN_DIR)/ubsan-$$t.log; exit 1; }; \
	  if grep -q "runtime error" $(SAN_DIR)/ubsan-$$t.log; then grep -m5 "runtime error" $(SAN_DIR)/ubsan-$$t.log; exit 1; fi; \
	  tail -1 $(SAN_DIR)/ubsan-$$t.log; done

sanitize-tsan: $(SAN_DIR)/tsan/test_stress $(SAN_DIR)/tsan/test_batcher
	GFNLM_NO_RLIMIT=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(SAN_DIR)/tsan/test_stress 1 4
	GFNLM_NO_RLIMIT=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(SAN_DIR)/tsan/test_batcher 40 4

## valgrind memcheck over the C tests against the release library (installed on first use when running as root).
## valgrind 3.19 (Debian 12) cannot read the DWARF 5 the Swift toolchain emits: the tests load a copy of the
## library without debug information (LD_LIBRARY_PATH overrides the tests' RUNPATH). Suppressions:
## Tests/Sanitize/valgrind.supp (uninitialised-value reports inside Swift's word-at-a-time string and enum code only).
valgrind-deps:
	@command -v valgrind >/dev/null || { if [ "$$(id -u)" = 0 ]; then apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind; \
	  else echo "Run: sudo apt-get install -y valgrind"; exit 1; fi; }

$(SAN_DIR)/valgrind/libgfnlm.so: $(LIB)
	@mkdir -p $(SAN_DIR)/valgrind
	objcopy --strip-debug $(LIB) $@
	ln -sf libgfnlm.so $(SAN_DIR)/valgrind/$(SONAME)

valgrind: valgrind-deps $(SAN_DIR)/valgrind/libgfnlm.so $(patsubst %,$(BUILD)/tests/%,$(SAN_TESTS))
	@set -e; for t in $(SAN_TESTS); do echo "== valgrind $$t"; \
	  GFNLM_NO_RLIMIT=1 LD_LIBRARY_PATH=$(SAN_DIR)/valgrind valgrind --tool=memcheck --error-exitcode=99 \
	    --leak-check=full --errors-for-leak-kinds=definite --suppressions=$(ROOT)/Tests/Sanitize/valgrind.supp \
	    $(BUILD)/tests/$$t > $(SAN_DIR)/valgrind-$$t.log 2>&1 || { tail -80 $(SAN_DIR)/valgrind-$$t.log; exit 1; }; \
	  grep -E "ERROR SUMMARY|definitely lost" $(SAN_DIR)/valgrind-$$t.log | tail -2; done

sanitize: sanitize-asan sanitize-ubsan sanitize-tsan valgrind
	@echo "sanitizers and valgrind: clean"
