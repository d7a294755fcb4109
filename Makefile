# polopt: `make demo` runs the main job, `make test` runs every test in every build variant.

CC     ?= cc
WARN    = -Wall -Wextra -Wpedantic -Werror
C99     = -std=c99 $(WARN)
CXX11   = -x c++ -std=c++11 $(WARN)
OPT     = -O3 -march=native
B       = build

TEST_SRC = tests/main.c tests/impl.c $(sort $(wildcard tests/test_*.c))
TEST_DEP = $(TEST_SRC) tests/harness.h polopt.h

# The test suite, built seven ways: three compilers and languages on three kernels (AVX-512 with -march=native,
# AVX2, generic SSE2), CBLAS, AddressSanitizer + UndefinedBehaviorSanitizer, and ThreadSanitizer (for the
# threaded HNSW build and concurrent searches).
VARIANTS = $(B)/test-gcc-c99-native $(B)/test-clang-c99-generic $(B)/test-gxx-cxx11-avx2 \
           $(B)/test-clangxx-cxx11-native $(B)/test-gcc-cblas $(B)/test-clang-asan-ubsan $(B)/test-clang-tsan
LINKS    = $(B)/link-c $(B)/link-cxx $(B)/link-c-user-cxx-impl $(B)/link-cxx-user-c-impl $(B)/link-static

.PRECIOUS: $(B)/readme-%.c
.PHONY: all test test-quick demo bench examples bench-programs clean
all: $(VARIANTS) $(LINKS) $(README_EXAMPLES) examples bench-programs

README_EXAMPLES = $(B)/readme-example $(B)/readme-example-mips $(B)/readme-example-train $(B)/readme-example-ope
# Arguments of the README examples, which run in $(B)/: the OPE example reads a log of the shipped OBD sample.
ARGS_readme-example-ope = ../../shared/data/obd/random/men/men.csv

test: $(VARIANTS) $(LINKS) $(B)/link/impl-c.o $(B)/link/impl-cxx.o $(README_EXAMPLES)
	@tests/run.sh $(VARIANTS) $(LINKS) \
	    "tests/link/check_symbols.sh symbols $(B)/link/impl-c.o $(B)/link/impl-cxx.o" \
	    $(foreach e,$(README_EXAMPLES),"cd $(B) && ./$(notdir $(e)) $(ARGS_$(notdir $(e))) >/dev/null && echo '$(notdir $(e)): 1 passed, 0 failed'")

# The examples of README.md, cut out of it, so the README cannot drift from the API.
$(B)/readme-%.c: README.md | $(B)
	awk '/readme-$*: end/{f=0} f&&!/^```/{print} /readme-$*: begin/{f=1}' $< > $@
$(B)/readme-%: $(B)/readme-%.c polopt.h
	gcc $(C99) -O2 -I. $< -o $@ -lm -pthread

# One fast build only, for the edit-compile-test loop.
test-quick: $(B)/test-gcc-c99-native
	@$(B)/test-gcc-c99-native

$(B):
	@mkdir -p $(B)/link

$(B)/test-gcc-c99-native: $(TEST_DEP) | $(B)
	gcc $(C99) -O2 -march=native -I. -DTH_VARIANT='"gcc-c99-native"' $(TEST_SRC) -o $@ -lm -pthread
$(B)/test-clang-c99-generic: $(TEST_DEP) | $(B)
	clang $(C99) -O2 -I. -DTH_VARIANT='"clang-c99-generic"' $(TEST_SRC) -o $@ -lm -pthread
$(B)/test-gxx-cxx11-avx2: $(TEST_DEP) | $(B)
	g++ $(CXX11) -O2 -mavx2 -mfma -I. -DTH_VARIANT='"g++-c++11-avx2"' $(TEST_SRC) -x none -o $@ -lm -pthread
$(B)/test-clangxx-cxx11-native: $(TEST_DEP) | $(B)
	clang++ $(CXX11) -O2 -march=native -I. -DTH_VARIANT='"clang++-c++11-native"' $(TEST_SRC) -x none -o $@ -lm -pthread
$(B)/test-gcc-cblas: $(TEST_DEP) | $(B)
	gcc $(C99) -O2 -march=native -DPOLOPT_USE_CBLAS -I. -DTH_VARIANT='"gcc-c99-cblas"' $(TEST_SRC) -o $@ -lopenblas -lm -pthread
$(B)/test-clang-asan-ubsan: $(TEST_DEP) | $(B)
	clang $(C99) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -I. \
	    -DTH_VARIANT='"clang-c99-asan-ubsan"' $(TEST_SRC) -o $@ -lm -pthread
$(B)/test-clang-tsan: $(TEST_DEP) | $(B)
	clang $(C99) -O1 -g -fsanitize=thread -I. -DTH_VARIANT='"clang-c99-tsan"' $(TEST_SRC) -o $@ -lm -pthread

# Link tests: declarations-only user file + implementation file, in C, C++ and both mixes; STATIC mode twice.
LINK_DEP = tests/link/user.c tests/link/impl.c polopt.h | $(B)
$(B)/link/impl-c.o: tests/link/impl.c polopt.h | $(B)
	gcc $(C99) -O2 -I. -c $< -o $@
$(B)/link/impl-cxx.o: tests/link/impl.c polopt.h | $(B)
	g++ $(CXX11) -O2 -I. -c $< -o $@
$(B)/link/user-c.o: tests/link/user.c polopt.h | $(B)
	gcc $(C99) -O2 -I. -c $< -o $@
$(B)/link/user-cxx.o: tests/link/user.c polopt.h | $(B)
	g++ $(CXX11) -O2 -I. -c $< -o $@
$(B)/link-c: $(B)/link/user-c.o $(B)/link/impl-c.o
	gcc $^ -o $@ -lm -pthread
$(B)/link-cxx: $(B)/link/user-cxx.o $(B)/link/impl-cxx.o
	g++ $^ -o $@ -lm -pthread
$(B)/link-c-user-cxx-impl: $(B)/link/user-c.o $(B)/link/impl-cxx.o
	g++ $^ -o $@ -lm -pthread
$(B)/link-cxx-user-c-impl: $(B)/link/user-cxx.o $(B)/link/impl-c.o
	g++ $^ -o $@ -lm -pthread
$(B)/link-static: tests/link/static_a.c tests/link/static_b.c polopt.h | $(B)
	gcc $(C99) -O2 -I. -DLINK_VARIANT='"link-static"' tests/link/static_a.c tests/link/static_b.c -o $@ -lm -pthread

# Examples and benchmarks
EXAMPLES = $(patsubst examples/%.c,$(B)/%,$(wildcard examples/*.c))
BENCHES  = $(patsubst bench/%.c,$(B)/%,$(filter-out %_cblas.c,$(wildcard bench/*.c)))
HAVE_CBLAS := $(shell echo 'int main(void){return 0;}' | $(CC) -include cblas.h -x c - -o /dev/null -lopenblas 2>/dev/null && echo 1)
BENCH_CBLAS = $(if $(HAVE_CBLAS),-DBENCH_HAVE_CBLAS -lopenblas,)

examples: $(EXAMPLES)
bench-programs: $(BENCHES)

$(B)/%: examples/%.c polopt.h | $(B)
	$(CC) $(C99) $(OPT) -I. $< -o $@ -lm -pthread
$(B)/bench_%: bench/bench_%.c bench/bench.h polopt.h | $(B)
	$(CC) $(C99) $(OPT) -I. $< -o $@ $(BENCH_CBLAS) -lm -pthread

# bench_train times REINFORCE a second time with CBLAS scoring, from a private copy of the library (when available).
$(B)/bench_train_cblas.o: bench/bench_train_cblas.c polopt.h | $(B)
	$(CC) $(C99) $(OPT) -I. -c $< -o $@
$(B)/bench_train: bench/bench_train.c bench/bench.h polopt.h $(if $(HAVE_CBLAS),$(B)/bench_train_cblas.o) | $(B)
	$(CC) $(C99) $(OPT) -I. $(if $(HAVE_CBLAS),-DBENCH_HAVE_CBLAS) $< $(if $(HAVE_CBLAS),$(B)/bench_train_cblas.o -lopenblas) \
	    -o $@ -lm -pthread

# bench_mips runs hnswlib beside polopt when Debian's libhnswlib-dev is installed (a C++ peer), and says so if not.
HAVE_HNSWLIB := $(wildcard /usr/include/hnswlib/hnswlib.h)
$(B)/hnswlib_peer.o: bench/hnswlib_peer.cpp | $(B)
	g++ -std=c++11 -O3 -march=native -w -c $< -o $@
$(B)/bench_mips: bench/bench_mips.c bench/bench.h polopt.h $(if $(HAVE_HNSWLIB),$(B)/hnswlib_peer.o) | $(B)
	$(CC) $(C99) $(OPT) -I. $(if $(HAVE_HNSWLIB),-DBENCH_HAVE_HNSWLIB) $< $(if $(HAVE_HNSWLIB),$(B)/hnswlib_peer.o -lstdc++) -o $@ -lm -pthread

# The main job: train the paper's method and REINFORCE on a million-item catalogue (about two minutes).
demo: $(B)/02_train
	$(B)/02_train

bench: $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

clean:
	rm -rf $(B)
