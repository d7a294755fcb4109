#!/bin/sh
# Runs each test command given (one shell word each, or quoted), shows its output, and ends with the total "N passed, N failed".
# Exit status: non-zero if any program failed or reported a failure.
status=0; passed=0; failed=0
for prog in "$@"; do
    out=$(sh -c "$prog" 2>&1) || status=1
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
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
