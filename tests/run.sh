#!/bin/sh
# Runs each test command given (one shell word each, or quoted), JOBS at a time (default: one per processor), then
# shows every output in the order given and ends with the total "N passed, N failed".  An argument "skip:TEXT" runs
# nothing and prints "skipped: TEXT" (a variant whose tools are missing): it counts neither as passed nor failed.
# Exit status: non-zero if any program failed or reported a failure.
jobs=${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
dir=$(mktemp -d "${TMPDIR:-/tmp}/polopt-tests.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
i=0
for prog in "$@"; do
    i=$((i + 1))
    case $prog in skip:*) continue ;; esac
    while [ $(( $(ls "$dir" | grep -c '\.started$') - $(ls "$dir" | grep -c '\.rc$') )) -ge "$jobs" ]; do sleep 0.2; done
    : > "$dir/$i.started"
    (sh -c "$prog" > "$dir/$i.out" 2>&1; echo $? > "$dir/$i.rc") &
done
wait
status=0; passed=0; failed=0; i=0
for prog in "$@"; do
    i=$((i + 1))
    case $prog in skip:*) echo "skipped: ${prog#skip:}"; continue ;; esac
    cat "$dir/$i.out"
    [ "$(cat "$dir/$i.rc")" = 0 ] || status=1
    line=$(grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' "$dir/$i.out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "  FAIL $prog printed no summary line"; failed=$((failed + 1)); status=1; continue
    fi
    p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
    f=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
    passed=$((passed + p)); failed=$((failed + f))
done
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed"
exit $status
