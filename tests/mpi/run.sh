#!/bin/sh
# The MPI test: `polopt train --mpi` on 2 ranks against 1 rank, with the same global minibatches in the same order
# and the exact gradient (so the runs differ only by the order of float sums: one gemm of 32 rows against two of
# 16 and an MPI sum).  Each of the 3 epochs x 24 Adam steps moves theta by at most lr = 1e-3 per entry, and a
# difference of 1e-7 relative in a gradient moves an Adam step by about as much: far below the tolerance of 1e-5.
# Then a SNIS run on 2 ranks (random draws, each rank its own) must finish and write a policy.
# Usage: tests/mpi/run.sh BUILD_DIR   (needs BUILD_DIR/polopt-mpi, BUILD_DIR/mpi-compare, mpirun)
set -e
B=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/polopt-mpi.XXXXXX")
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# a basket log: 800 sessions of 3 to 9 items over 400 items in 8 themes (a fixed linear congruential generator)
awk 'BEGIN { s = 12345; print "session,item";
             for (i = 0; i < 800; ++i) { n = 3 + i % 7;
               for (t = 0; t < n; ++t) { s = (s * 1103515245 + 12345) % 2147483648;
                                         print "s" i ",i" (i % 8) * 50 + (s % 50) } } }' > "$dir/log.csv"
"$B/polopt-mpi" embed --log "$dir/log.csv" --out "$dir/m" --dim 16 2>/dev/null >/dev/null
run() { # ranks, then train's options; the output shown only on failure
    np=$1
    shift
    mpirun --oversubscribe -np "$np" "$B/polopt-mpi" train --model "$dir/m" --mpi --epochs 3 "$@" > "$dir/out" 2>&1 ||
        { cat "$dir/out"; return 1; }
}
run 1 --method exact && cp "$dir/m/policy.bin" "$dir/one.bin" || true
run 2 --method exact && cp "$dir/m/policy.bin" "$dir/two.bin" || true
"$B/mpi-compare" "$dir/one.bin" "$dir/two.bin" 1e-5
rm -f "$dir/m/policy.bin"
if run 2 --method snis --K 32 --S 200 && [ -f "$dir/m/policy.bin" ]; then
    echo "mpi-snis: 1 passed, 0 failed"
else
    echo "  FAIL a SNIS run on 2 ranks"
    echo "mpi-snis: 0 passed, 1 failed"
    exit 1
fi
