#!/bin/sh
# `make fuzz`: runs each libFuzzer driver (built by the Makefile as DIR/fuzzer-NAME) for SECONDS, one at a time, on a
# scratch copy of its corpus (DIR/corpus-NAME, seeded from tests/fuzz/corpus/NAME and tests/fuzz/regressions/NAME, so
# the checked-in corpus is never written), and prints per driver the executions and the time.  A crash, leak,
# sanitizer report, timeout, out-of-memory or invariant violation stops that driver: its report is shown, the input
# lies in DIR/NAME-crash-* (or -leak-, -timeout-, -oom-), and the exit status is non-zero.  Every driver runs even
# after a finding.  Extra libFuzzer flags: FUZZ_FLAGS in the environment.
# Usage: tests/fuzz/fuzz.sh SECONDS DIR NAME...
secs=$1
dir=$2
shift 2
status=0
for name in "$@"; do
    case $name in
    index) max_len=16384 ;; # the seeds are up to ~5 KiB; bigger indexes only slow the search
    *) max_len=8192 ;;
    esac
    corpus=$dir/corpus-$name
    log=$dir/fuzz-$name.log
    mkdir -p "$corpus"
    for seed in tests/fuzz/corpus/"$name"/* tests/fuzz/regressions/"$name"/*; do
        [ -f "$seed" ] && cp "$seed" "$corpus/"
    done
    mkdir -p "$dir/tmp" # the drivers' scratch files: one a crashed run leaves stays here, not in /tmp
    start=$(date +%s)
    # -rss_limit_mb/-malloc_limit_mb: a loader that trusts a header's sizes and allocates gigabytes is a finding
    TMPDIR=$dir/tmp "$dir/fuzzer-$name" "$corpus" -max_total_time="$secs" -max_len=$max_len -timeout=20 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="$dir/$name-" $FUZZ_FLAGS > "$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    units=$(ls "$corpus" | wc -l | tr -d ' ')
    if [ "$rc" -eq 0 ]; then
        echo "fuzz-$name: ${execs:-?} executions in ${took} s (${rate:-?}/s), corpus of $units inputs: no finding"
    else
        status=1
        echo "fuzz-$name: FINDING after ${execs:-?} executions in ${took} s (exit status $rc); log $log"
        # the report: from the first sanitizer/libFuzzer error line on
        awk '/ERROR: |runtime error|invariant violated|==[0-9]+==|SUMMARY:|Test unit written|^fuzz: /{f=1} f' "$log" | head -n 60
    fi
done
exit $status
