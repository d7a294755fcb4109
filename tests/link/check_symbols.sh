#!/bin/sh
# Every symbol an implementation object exports must start with polopt_ (nothing internal leaks).
# Usage: check_symbols.sh NAME OBJECT...   prints "NAME: N passed, N failed"
name=$1; shift
passed=0; failed=0
for obj in "$@"; do
    leaks=$(nm -g --defined-only "$obj" | awk 'NF >= 3 {print $3}' | grep -v '^polopt_' || true)
    if [ -n "$leaks" ]; then
        echo "  FAIL $obj exports: $leaks"
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
done
echo "$name: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
