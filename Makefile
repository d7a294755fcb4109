# polopt: `make demo` runs the main job, `make test` runs every test in every build variant this machine can build.

CC     ?= cc
CXX     = g++
WARN    = -Wall -Wextra -Wpedantic -Werror
C99     = -std=c99 $(WARN)
CXX11   = -x c++ -std=c++11 $(WARN)
OPT     = -O3 -march=native
B       = build

TEST_SRC = tests/main.c tests/impl.c $(sort $(wildcard tests/test_*.c))
TEST_DEP = $(TEST_SRC) tests/harness.h polopt.h polopt_cuda.h

# ---- What this machine has.  A test variant whose tools are missing is skipped, and says which package it needs.
have     = $(shell command -v $(1) >/dev/null 2>&1 && echo 1)
probe    = $(shell echo 'int main(void){return 0;}' | $(1) -x c - -o /dev/null $(2) 2>/dev/null && echo 1)
HAVE_GCC      := $(call have,gcc)
HAVE_CLANG    := $(call have,clang)
HAVE_GXX      := $(call have,g++)
HAVE_CLANGXX  := $(call have,clang++)
HAVE_CBLAS    := $(call probe,$(CC),-include cblas.h -lopenblas)
HAVE_ASAN     := $(if $(HAVE_CLANG),$(call probe,clang,-fsanitize=address,undefined))
HAVE_TSAN     := $(if $(HAVE_CLANG),$(call probe,clang,-fsanitize=thread))
HAVE_SIMDE    := $(if $(HAVE_GCC),$(call probe,gcc,-mavx2 -include simde/x86/avx512.h))
CPU_AVX2      := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && echo 1)
HAVE_A64_CC   := $(call probe,aarch64-linux-gnu-gcc,-static)
HAVE_QEMU_A64 := $(call have,qemu-aarch64)
HAVE_I386_CC  := $(call probe,i686-linux-gnu-gcc,-static)
# 32-bit x86 programs run natively on most x86-64 kernels; elsewhere under qemu-i386, which emulates the x87
# floating point slowly (minutes per suite): there, the two slow statistical suites (learn, ope) are left out.
I386_NATIVE   := $(if $(HAVE_I386_CC),$(shell echo 'int main(void){return 0;}' | i686-linux-gnu-gcc -static -x c - \
                   -o /tmp/polopt-i386-probe 2>/dev/null && /tmp/polopt-i386-probe 2>/dev/null && echo 1; \
                   rm -f /tmp/polopt-i386-probe))
HAVE_QEMU_I386 := $(call have,qemu-i386)
# OpenMPI (libopenmpi-dev, openmpi-bin): the data-parallel build of the command-line tool and its test
HAVE_MPI      := $(if $(call have,mpicc),$(call have,mpirun))
MPI_TEST       = $(B)/polopt-mpi $(B)/mpi-compare

# ---- The test suite, built many ways.  Each variant: its build command, whether it can be built here, the Debian
# package it needs otherwise, and how to run it (default: the program itself).
#   cc-c99               the default compiler, plain -O2 as distributions build: the kernels are chosen at run time
#   cc-c99-portable      POLOPT_NO_SIMD: only the portable C kernels
#   gcc-c99-native       gcc -O3 -march=native
#   clang-c99            clang -O2
#   gxx-cxx11-avx2       the implementation as C++ (g++), AVX2 + FMA enabled at compile time
#   clangxx-cxx11-native clang++ -march=native
#   gcc-cblas            POLOPT_USE_CBLAS with OpenBLAS
#   clang-asan-ubsan     AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on)
#   clang-tsan           ThreadSanitizer: the threaded HNSW build and concurrent searches
#   gcc-avx512-emulated  the AVX-512 kernels run through SIMDe's portable intrinsics, so a CPU without AVX-512 still
#                        tests their logic (on an AVX-512 CPU the other variants run them for real)
#   aarch64-neon         aarch64 with the NEON kernels, under qemu-aarch64
#   i386                 32-bit x86 (size_t of 32 bits, x87 floating point), portable kernels
VARIANTS = cc-c99 cc-c99-portable gcc-c99-native clang-c99 gxx-cxx11-avx2 clangxx-cxx11-native gcc-cblas \
           clang-asan-ubsan clang-tsan gcc-avx512-emulated aarch64-neon i386

BUILD_cc-c99               = $(CC) $(C99) -O2
BUILD_cc-c99-portable      = $(CC) $(C99) -O2 -DPOLOPT_NO_SIMD
BUILD_gcc-c99-native       = gcc $(C99) -O3 -march=native
BUILD_clang-c99            = clang $(C99) -O2
BUILD_gxx-cxx11-avx2       = g++ $(CXX11) -O2 -mavx2 -mfma
BUILD_clangxx-cxx11-native = clang++ $(CXX11) -O2 -march=native
BUILD_gcc-cblas            = gcc $(C99) -O2 -march=native -DPOLOPT_USE_CBLAS
BUILD_clang-asan-ubsan     = clang $(C99) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
BUILD_clang-tsan           = clang $(C99) -O1 -g -fsanitize=thread
BUILD_gcc-avx512-emulated  = gcc $(C99) -O2 -mavx2 -mfma -Wno-psabi -DPOLOPT__EMULATE_AVX512
BUILD_aarch64-neon         = aarch64-linux-gnu-gcc $(C99) -O2 -static
BUILD_i386                 = i686-linux-gnu-gcc $(C99) -O2 -static

OK_cc-c99               = 1
OK_cc-c99-portable      = 1
OK_gcc-c99-native       = $(HAVE_GCC)
OK_clang-c99            = $(HAVE_CLANG)
OK_gxx-cxx11-avx2       = $(if $(HAVE_GXX),$(CPU_AVX2))
OK_clangxx-cxx11-native = $(HAVE_CLANGXX)
OK_gcc-cblas            = $(if $(HAVE_GCC),$(HAVE_CBLAS))
OK_clang-asan-ubsan     = $(HAVE_ASAN)
OK_clang-tsan           = $(HAVE_TSAN)
OK_gcc-avx512-emulated  = $(if $(HAVE_SIMDE),$(CPU_AVX2))
OK_aarch64-neon         = $(if $(HAVE_A64_CC),$(HAVE_QEMU_A64))
OK_i386                 = $(if $(HAVE_I386_CC),$(or $(I386_NATIVE),$(HAVE_QEMU_I386)))

NEEDS_gcc-c99-native       = gcc
NEEDS_clang-c99            = clang
NEEDS_gxx-cxx11-avx2       = g++ and a CPU with AVX2
NEEDS_clangxx-cxx11-native = clang
NEEDS_gcc-cblas            = gcc, libopenblas-dev
NEEDS_clang-asan-ubsan     = clang, libclang-rt-dev
NEEDS_clang-tsan           = clang, libclang-rt-dev
NEEDS_gcc-avx512-emulated  = libsimde-dev and a CPU with AVX2
NEEDS_aarch64-neon         = gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user
NEEDS_i386                 = gcc-i686-linux-gnu, libc6-dev-i386-cross

LIBS_gcc-cblas = -lopenblas
RUN_aarch64-neon = qemu-aarch64 $(B)/test-aarch64-neon
RUN_i386 = $(if $(I386_NATIVE),$(B)/test-i386,qemu-i386 $(B)/test-i386 rng linalg numerics mips optim synth api)

RUNNABLE = $(foreach v,$(VARIANTS),$(if $(OK_$(v)),$(v)))
SKIPPED  = $(foreach v,$(VARIANTS),$(if $(OK_$(v)),,$(v)))
TEST_BINS = $(patsubst %,$(B)/test-%,$(RUNNABLE))

$(B)/test-%: $(TEST_DEP) | $(B)
	$(BUILD_$*) -I. -DTH_VARIANT='"$*"' $(TEST_SRC) -o $@ $(LIBS_$*) -lm -pthread

# ---- Link tests: a declarations-only user file + the implementation file, in C, C++ and both mixes; STATIC mode in
# two translation units; and no symbol without the polopt_ prefix.
LINKS_C   = $(B)/link-c $(B)/link-static
LINKS_CXX = $(B)/link-cxx $(B)/link-c-user-cxx-impl $(B)/link-cxx-user-c-impl
LINKS     = $(LINKS_C) $(if $(HAVE_GXX),$(LINKS_CXX))
LINK_OBJS = $(B)/link/impl-c.o $(if $(HAVE_GXX),$(B)/link/impl-cxx.o)

$(B)/link/impl-c.o: tests/link/impl.c polopt.h | $(B)
	$(CC) $(C99) -O2 -I. -c $< -o $@
$(B)/link/impl-cxx.o: tests/link/impl.c polopt.h | $(B)
	$(CXX) $(CXX11) -O2 -I. -c $< -o $@
$(B)/link/user-c.o: tests/link/user.c polopt.h | $(B)
	$(CC) $(C99) -O2 -I. -c $< -o $@
$(B)/link/user-cxx.o: tests/link/user.c polopt.h | $(B)
	$(CXX) $(CXX11) -O2 -I. -c $< -o $@
$(B)/link-c: $(B)/link/user-c.o $(B)/link/impl-c.o
	$(CC) $^ -o $@ -lm -pthread
$(B)/link-cxx: $(B)/link/user-cxx.o $(B)/link/impl-cxx.o
	$(CXX) $^ -o $@ -lm -pthread
$(B)/link-c-user-cxx-impl: $(B)/link/user-c.o $(B)/link/impl-cxx.o
	$(CXX) $^ -o $@ -lm -pthread
$(B)/link-cxx-user-c-impl: $(B)/link/user-cxx.o $(B)/link/impl-c.o
	$(CXX) $^ -o $@ -lm -pthread
$(B)/link-static: tests/link/static_a.c tests/link/static_b.c polopt.h | $(B)
	$(CC) $(C99) -O2 -I. -DLINK_VARIANT='"link-static"' tests/link/static_a.c tests/link/static_b.c -o $@ -lm -pthread

# ---- The examples of README.md, cut out of it, so the README cannot drift from the API.
README_EXAMPLES = $(B)/readme-example $(B)/readme-example-mips $(B)/readme-example-train $(B)/readme-example-topk \
                  $(B)/readme-example-lpi $(B)/readme-example-session \
                  $(B)/readme-example-ope $(B)/readme-example-slates
# Arguments of the README examples, which run in $(B)/: the OPE example reads a log of the shipped OBD sample.
ARGS_readme-example-ope = ../../shared/data/obd/random/men/men.csv

.PRECIOUS: $(B)/readme-%.c
$(B)/readme-%.c: README.md | $(B)
	awk '/readme-$*: end/{f=0} f&&!/^```/{print} /readme-$*: begin/{f=1}' $< > $@
$(B)/readme-%: $(B)/readme-%.c polopt.h
	$(CC) $(C99) -O2 -I. $< -o $@ -lm -pthread

# ---- Fuzzing (tests/fuzz/): a libFuzzer driver per parser (the index and policy loaders, the CSV reader), each of
# which also uses what it loaded and checks invariants (see the top of each driver).
#   make test         replays the checked-in corpus and the regressions (tests/fuzz/{corpus,regressions}/NAME/)
#                     through every driver built as a plain program (tests/fuzz/replay.c: one child process per
#                     input), with the default compiler and, when available, with ASan + UBSan
#   make fuzz         fuzzes each driver for FUZZ_SECONDS (clang -fsanitize=fuzzer,address,undefined) on a scratch
#                     copy of its corpus in $(B)/fuzz/corpus-NAME; findings go to $(B)/fuzz/NAME-crash-* (etc.) and
#                     fail it.  Minimise one with `$(B)/fuzz/fuzzer-NAME -minimize_crash=1 -runs=10000 FILE`, then
#                     keep it as tests/fuzz/regressions/NAME/SHORT-NAME.
#   make fuzz-corpus  regenerates the binary and CSV seeds (tests/fuzz/make_corpus.c) into tests/fuzz/corpus/
FUZZ_DRIVERS  = index policy csv interactions
FUZZ_SECONDS ?= 60
FUZZ_DEP      = tests/fuzz/fuzz.h polopt.h $(B)/fuzz/defs
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all
# e.g. -DFUZZ_NO_SILENT_NAN=0, -DFUZZ_PURE_SAVE=0, -DFUZZ_CHECK_KNOWN_BUGS=0: leave out a check (see the drivers)
FUZZ_DEFS    ?=
FUZZ_INPUTS_index  = tests/fuzz/corpus/index $(wildcard tests/fuzz/regressions/index)
FUZZ_INPUTS_policy = tests/fuzz/corpus/policy $(wildcard tests/fuzz/regressions/policy)
FUZZ_INPUTS_csv    = tests/fuzz/corpus/csv $(wildcard tests/fuzz/regressions/csv)
FUZZ_INPUTS_interactions = tests/fuzz/corpus/interactions $(wildcard tests/fuzz/regressions/interactions)
# libFuzzer's runtime (clang's libclang-rt-dev); the probe has no main, libFuzzer brings it
HAVE_LIBFUZZER := $(shell command -v clang >/dev/null 2>&1 && echo 'int LLVMFuzzerTestOneInput(const char *d){return d == 0;}' \
                    | clang -x c - -o /dev/null -fsanitize=fuzzer,address,undefined 2>/dev/null && echo 1)
FUZZ_REPLAYS  = $(patsubst %,$(B)/fuzz/replay-%,$(FUZZ_DRIVERS)) \
                $(if $(HAVE_ASAN),$(patsubst %,$(B)/fuzz/replay-asan-ubsan-%,$(FUZZ_DRIVERS)))
FUZZERS       = $(patsubst %,$(B)/fuzz/fuzzer-%,$(FUZZ_DRIVERS))

$(B)/fuzz/replay-asan-ubsan-%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FUZZ_DEP) | $(B)/fuzz
	clang $(C99) -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -I. $(FUZZ_DEFS) -DFUZZ_NAME='"$*-asan-ubsan"' \
	    tests/fuzz/fuzz_$*.c tests/fuzz/replay.c -o $@ -lm -pthread
$(B)/fuzz/replay-%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FUZZ_DEP) | $(B)/fuzz
	$(CC) $(C99) -O1 -I. $(FUZZ_DEFS) -DFUZZ_NAME='"$*"' tests/fuzz/fuzz_$*.c tests/fuzz/replay.c -o $@ -lm -pthread
$(B)/fuzz/fuzzer-%: tests/fuzz/fuzz_%.c $(FUZZ_DEP) | $(B)/fuzz
	clang $(C99) -g -O1 -fsanitize=fuzzer $(FUZZ_SAN) -I. $(FUZZ_DEFS) $< -o $@ -lm -pthread
$(B)/fuzz/make_corpus: tests/fuzz/make_corpus.c polopt.h | $(B)/fuzz
	$(CC) $(C99) -O1 -I. $< -o $@ -lm -pthread

$(B)/fuzz:
	@mkdir -p $@
# FUZZ_DEFS as last built with: a change rebuilds the drivers (the file only changes when they do)
$(B)/fuzz/defs: FORCE | $(B)/fuzz
	@echo '$(FUZZ_DEFS)' | cmp -s - $@ || echo '$(FUZZ_DEFS)' > $@
FORCE:

fuzz: $(if $(HAVE_LIBFUZZER),$(FUZZERS))
	@$(if $(HAVE_LIBFUZZER),tests/fuzz/fuzz.sh $(FUZZ_SECONDS) $(B)/fuzz $(FUZZ_DRIVERS),echo "skipped: fuzz (needs clang, libclang-rt-dev)")

# ---- The CUDA companion, polopt_cuda.h.  `make cuda-check` compiles it and its device tests with nvcc (warnings
# are errors) for a recent (sm_90) and an older (sm_75) architecture, with or without a GPU; `make cuda-test` runs
# the device tests, which print "skipped:" without a device.  make test runs the host tests of its device math.
NVCC      ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA_ARCH  = -gencode arch=compute_90,code=sm_90 -gencode arch=compute_75,code=sm_75
NVCC_FLAGS = -std=c++17 -O2 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror $(CUDA_ARCH)
CUDA_BINS  = $(B)/cuda/test_cuda $(B)/cuda/cuda_train $(B)/cuda/bench_cuda
cuda-check: $(if $(NVCC),$(CUDA_BINS))
	@$(if $(NVCC),echo "cuda-check: $(words $(CUDA_BINS)) program(s) built by $(NVCC)",echo "skipped: cuda-check (needs nvcc, the CUDA toolkit)")
cuda-test: cuda-check
	@$(if $(NVCC),$(B)/cuda/test_cuda,echo "skipped: cuda-test (needs nvcc, the CUDA toolkit)")
$(B)/cuda/%: tests/cuda/%.cu polopt_cuda.h polopt.h
	@mkdir -p $(B)/cuda
	$(NVCC) $(NVCC_FLAGS) -I. $< -o $@
$(B)/cuda/%: examples/%.cu polopt_cuda.h polopt.h
	@mkdir -p $(B)/cuda
	$(NVCC) $(NVCC_FLAGS) -I. $< -o $@
$(B)/cuda/%: bench/%.cu bench/bench.h polopt_cuda.h polopt.h
	@mkdir -p $(B)/cuda
	$(NVCC) $(NVCC_FLAGS) -I. $< -o $@

fuzz-corpus: $(B)/fuzz/make_corpus
	rm -rf tests/fuzz/corpus/index tests/fuzz/corpus/policy tests/fuzz/corpus/csv tests/fuzz/corpus/interactions
	mkdir -p tests/fuzz/corpus/index tests/fuzz/corpus/policy tests/fuzz/corpus/csv tests/fuzz/corpus/interactions
	$(B)/fuzz/make_corpus tests/fuzz/corpus

.PHONY: all test test-quick demo bench examples bench-programs clean fuzz fuzz-corpus polopt-mpi cuda-check cuda-test
all: $(TEST_BINS) $(LINKS) $(README_EXAMPLES) examples bench-programs $(if $(HAVE_MPI),$(MPI_TEST))

test: $(TEST_BINS) $(LINKS) $(LINK_OBJS) $(README_EXAMPLES) $(FUZZ_REPLAYS) $(B)/polopt $(if $(HAVE_MPI),$(MPI_TEST))
	@tests/run.sh $(foreach v,$(RUNNABLE),"$(or $(RUN_$(v)),$(B)/test-$(v))") $(LINKS) \
	    "tests/link/check_symbols.sh symbols $(LINK_OBJS)" \
	    "tests/cli/run.sh $(B)" $(if $(HAVE_MPI),"tests/mpi/run.sh $(B)","skip:mpi (needs libopenmpi-dev, openmpi-bin)") \
	    $(foreach e,$(README_EXAMPLES),"cd $(B) && ./$(notdir $(e)) $(ARGS_$(notdir $(e))) >/dev/null && echo '$(notdir $(e)): 1 passed, 0 failed'") \
	    $(foreach r,$(FUZZ_REPLAYS),"$(r) $(FUZZ_INPUTS_$(lastword $(subst -, ,$(r))))") \
	    $(foreach v,$(SKIPPED),"skip:$(v) (needs $(NEEDS_$(v)))") \
	    $(if $(HAVE_GXX),,"skip:link tests in C++ (needs g++)") \
	    $(if $(HAVE_ASAN),,"skip:fuzz-replay-asan-ubsan (needs clang, libclang-rt-dev)")

# One fast build only, for the edit-compile-test loop.
test-quick: $(B)/test-cc-c99
	@$(B)/test-cc-c99

$(B):
	@mkdir -p $(B)/link

# ---- The command-line tool (examples/polopt.c, built as $(B)/polopt with the examples) and its MPI build:
# `make polopt-mpi` with OpenMPI's mpicc; tests/mpi/run.sh trains on 1 and 2 ranks and compares (mpi-compare).
polopt-mpi: $(B)/polopt-mpi
$(B)/polopt-mpi: examples/polopt.c polopt.h | $(B)
	mpicc $(C99) -O2 -DPOLOPT_CLI_MPI -I. $< -o $@ -lm -pthread
$(B)/mpi-compare: tests/mpi/compare.c polopt.h | $(B)
	$(CC) $(C99) -O2 -I. $< -o $@ -lm -pthread

# ---- Examples and benchmarks
EXAMPLES = $(patsubst examples/%.c,$(B)/%,$(wildcard examples/*.c))
BENCHES  = $(patsubst bench/%.c,$(B)/%,$(filter-out %_cblas.c,$(wildcard bench/*.c)))
BENCH_CBLAS = $(if $(HAVE_CBLAS),-DBENCH_HAVE_CBLAS -lopenblas,)

examples: $(EXAMPLES)
bench-programs: $(BENCHES)

$(B)/%: examples/%.c polopt.h | $(B)
	$(CC) $(C99) $(OPT) -I. $< -o $@ -lm -pthread
$(B)/bench_%: bench/bench_%.c bench/bench.h polopt.h | $(B)
	$(CC) $(C99) $(OPT) -I. $< -o $@ $(BENCH_CBLAS) -lm -pthread

# bench_train and bench_mips run the library a second time with CBLAS, from a private copy (when OpenBLAS is there).
CBLAS_OBJ = $(if $(HAVE_CBLAS),$(B)/bench_cblas.o)
CBLAS_LINK = $(if $(HAVE_CBLAS),-DBENCH_HAVE_CBLAS $(B)/bench_cblas.o -lopenblas)
$(B)/bench_cblas.o: bench/bench_cblas.c bench/bench.h polopt.h | $(B)
	$(CC) $(C99) $(OPT) -I. -c $< -o $@
$(B)/bench_train: bench/bench_train.c bench/bench.h polopt.h $(CBLAS_OBJ) | $(B)
	$(CC) $(C99) $(OPT) -I. $< $(CBLAS_LINK) -o $@ -lm -pthread

# bench_mips runs hnswlib beside polopt when Debian's libhnswlib-dev is installed (a C++ peer), and says so if not.
HAVE_HNSWLIB := $(if $(HAVE_GXX),$(wildcard /usr/include/hnswlib/hnswlib.h))
$(B)/hnswlib_peer.o: bench/hnswlib_peer.cpp | $(B)
	g++ -std=c++11 -O3 -march=native -w -c $< -o $@
$(B)/bench_mips: bench/bench_mips.c bench/bench.h polopt.h $(if $(HAVE_HNSWLIB),$(B)/hnswlib_peer.o) $(CBLAS_OBJ) | $(B)
	$(CC) $(C99) $(OPT) -I. $(if $(HAVE_HNSWLIB),-DBENCH_HAVE_HNSWLIB) $< $(if $(HAVE_HNSWLIB),$(B)/hnswlib_peer.o -lstdc++) \
	    $(CBLAS_LINK) -o $@ -lm -pthread

# The main job: train the paper's method and REINFORCE on a million-item catalogue with sparse rewards.
demo: $(B)/02_train
	$(B)/02_train

bench: $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

clean:
	rm -rf $(B)
