#!/bin/sh
# The command-line tool end to end on small generated data: every command runs and writes what it says, its output
# has the fields a script reads, and bad input gets one line on stderr, exit status 2 and no file written.
# Usage: tests/cli/run.sh BUILD_DIR   (needs BUILD_DIR/polopt)
B=$1
P="$B/polopt"
dir=$(mktemp -d "${TMPDIR:-/tmp}/polopt-cli.XXXXXX")
trap 'rm -rf "$dir"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }
expect() { # description, then a command that must succeed
    what=$1
    shift
    if "$@" > "$dir/out" 2> "$dir/err"; then ok; else bad "$what (exit $?): $(head -c 300 "$dir/err")"; fi
}
refuse() { # description, then a command that must fail with status 2 and a one-line message
    what=$1
    shift
    "$@" > "$dir/out" 2> "$dir/err"
    rc=$?
    if [ "$rc" = 2 ] && [ "$(wc -l < "$dir/err")" = 1 ]; then ok; else bad "$what: exit $rc, stderr: $(cat "$dir/err")"; fi
}
# 900 baskets of 3 to 9 items over 450 items in 9 themes; names for the items
awk 'BEGIN { s = 7; print "basket,item";
             for (i = 0; i < 900; ++i) { n = 3 + i % 7;
               for (t = 0; t < n; ++t) { s = (s * 1103515245 + 12345) % 2147483648;
                                         print "b" i ",p" (i % 9) * 50 + (s % 50) } } }' > "$dir/log.csv"
awk 'BEGIN { for (a = 0; a < 450; ++a) print "p" a "\tpackage-" a }' > "$dir/names.tsv"
# a logged bandit CSV: 3000 rounds, 6 actions taken uniformly, clicks more likely for action 2 with feature a
awk 'BEGIN { s = 3; print "f,action,p,click";
             for (i = 0; i < 3000; ++i) { s = (s * 1103515245 + 12345) % 2147483648; a = s % 6; f = (s / 6) % 2;
                                          s = (s * 1103515245 + 12345) % 2147483648;
                                          c = (s % 100) < (a == 2 && f == 1 ? 40 : 5);
                                          print (f ? "a" : "b") "," a ",0.1666667," c } }' > "$dir/bandit.csv"

expect "embed" "$P" embed --log "$dir/log.csv" --session basket --out "$dir/m" --dim 12
for f in log.bin items.bin test.bin protocol.tsv; do [ -f "$dir/m/$f" ] && ok || bad "embed wrote no $f"; done
expect "index" "$P" index --model "$dir/m" --M 8
[ -f "$dir/m/index.bin" ] && ok || bad "index wrote no index.bin"
expect "train" "$P" train --model "$dir/m" --epochs 2 --K 32 --S 200
grep -q 'epoch 2/2' "$dir/err" && ok || bad "train showed no progress on stderr"
[ -f "$dir/m/policy.bin" ] && ok || bad "train wrote no policy.bin"
expect "train --method reinforce" "$P" train --model "$dir/m" --epochs 1 --method reinforce --S 100
expect "eval --json" "$P" eval --model "$dir/m" --json
grep -q '"value": [0-9.]*, "r1_all": [0-9.]*, "r1_ex_x": [0-9.]*' "$dir/out" && ok || bad "eval's JSON: $(cat "$dir/out")"
observed=$(sed -n '2,4p' "$dir/log.csv" | cut -d, -f2 | paste -sd, -) # the items of the first basket
expect "recommend" "$P" recommend --model "$dir/m" --observed "$observed" --names "$dir/names.tsv" --k 4
[ "$(grep -c 'package-' "$dir/out")" = 4 ] && ok || bad "recommend printed: $(cat "$dir/out")"
for item in $(echo "$observed" | tr , ' '); do
    grep -q "	$item	" "$dir/out" && bad "recommend served the observed item $item" || ok
done
expect "experiment --json" "$P" experiment --log "$dir/log.csv" --session basket --dim 12 --epochs 2 --K 32 --S 200 --json
tail -n 1 "$dir/out" | grep -q '"test_value": [0-9.]*.*"test_r1_all".*"test_r1_ex_x".*"test_hr10_ex_x".*"seconds_per_epoch"' &&
    ok || bad "experiment's JSON line: $(tail -n 1 "$dir/out")"
expect "experiment --method uniform" "$P" experiment --log "$dir/log.csv" --session basket --dim 12 --epochs 1 --S 200 --method uniform --json
tail -n 1 "$dir/out" | grep -q '"method": "uniform", "epsilon": 1, "adaptive": false' && ok || bad "uniform's JSON line: $(tail -n 1 "$dir/out")"
# --splits 2: the mean of the runs with --seed 1 and --seed 2 alone, and their standard deviation
E="experiment --log $dir/log.csv --session basket --dim 12 --epochs 1 --S 200 --method uniform --json"
json_num() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" "$2" | tail -n 1; }
expect "experiment --seed 1" "$P" $E --seed 1 && cp "$dir/out" "$dir/s1"
expect "experiment --seed 2" "$P" $E --seed 2 && cp "$dir/out" "$dir/s2"
expect "experiment --splits 2" "$P" $E --seed 1 --splits 2
awk -v a="$(json_num test_value "$dir/s1")" -v b="$(json_num test_value "$dir/s2")" \
    -v m="$(json_num test_value "$dir/out")" -v s="$(json_num test_value_sd "$dir/out")" \
    'BEGIN { d = a - b; if (d < 0) d = -d; e = m - (a + b) / 2; if (e < 0) e = -e; f = s - d / sqrt(2); if (f < 0) f = -f;
             exit !(a != "" && e < 2e-6 && f < 2e-6) }' && grep -q '"splits": 2' "$dir/out" &&
    ok || bad "--splits 2 is not the mean and sd of seeds 1 and 2: $(tail -n 1 "$dir/out")"
grep -q '"splits": 1, "test_value_sd": null' "$dir/s1" && ok || bad "one split's sd is not null: $(tail -n 1 "$dir/s1")"
expect "experiment --val 0" "$P" experiment --log "$dir/log.csv" --session basket --dim 12 --epochs 1 --S 200 --method uniform --val 0 --json
tail -n 1 "$dir/out" | grep -q '"val_value": null, "val_r1_ex_x": null, "test_value": [0-9.]*,' && ok || bad "--val 0's JSON line: $(tail -n 1 "$dir/out")"
grep -q '^val ' "$dir/out" && bad "--val 0 printed validation metrics" || ok
expect "embed --svd-input whole" "$P" embed --log "$dir/log.csv" --session basket --out "$dir/mw" --dim 12 --svd-input whole
grep -q '^svd_of_whole_sessions	1$' "$dir/mw/protocol.tsv" && grep -q '^svd_of_whole_sessions	0$' "$dir/m/protocol.tsv" &&
    ok || bad "protocol.tsv does not record the SVD's input"
expect "ope" "$P" ope --log "$dir/bandit.csv" --propensity p --reward click --categorical f
grep -q '^IPS' "$dir/out" && grep -q '^Switch-DR' "$dir/out" && ok || bad "ope printed: $(cat "$dir/out")"
expect "train --logged" "$P" train --logged "$dir/bandit.csv" --propensity p --reward click --categorical f --out "$dir/pol.bin" --epochs 30 --lr 0.05
expect "ope --policy" "$P" ope --log "$dir/bandit.csv" --propensity p --reward click --categorical f --policy "$dir/pol.bin" --json
# the trained policy prefers action 2 for feature a, so its IPS value is above the log's click rate
awk -F'"IPS": {"value": ' 'NF > 1 { split($2, v, ","); exit !(v[1] > 0.12) }' "$dir/out" && ok || bad "ope --policy: $(cat "$dir/out")"
for c in embed index train eval recommend ope experiment; do expect "$c --help" "$P" "$c" --help; done

refuse "a missing log" "$P" embed --log "$dir/none.csv" --out "$dir/m2"
[ -e "$dir/m2" ] && bad "a failed embed created its directory" || ok
printf 'basket,item\nb1,p1\nb2\n' > "$dir/broken.csv"
refuse "a broken row" "$P" embed --log "$dir/broken.csv" --session basket --out "$dir/m3"
grep -q 'line 3' "$dir/err" && ok || bad "the broken row's message names no line: $(cat "$dir/err")"
refuse "an unknown option" "$P" train --model "$dir/m" --bogus 1
refuse "a bad number" "$P" train --model "$dir/m" --lr fast
refuse "an unknown item" "$P" recommend --model "$dir/m" --observed nothing
refuse "an unknown command" "$P" frobnicate
refuse "no model" "$P" eval --model "$dir/nowhere"
refuse "--epsilon without snis" "$P" train --model "$dir/m" --method uniform --epsilon 0.5
refuse "--splits 0" "$P" experiment --log "$dir/log.csv" --session basket --splits 0
refuse "an empty test part" "$P" experiment --log "$dir/log.csv" --session basket --dim 12 --test 0
refuse "a bad --svd-input" "$P" embed --log "$dir/log.csv" --session basket --out "$dir/m4" --svd-input both
[ -e "$dir/m4" ] && bad "a refused embed created its directory" || ok
refuse "--mpi without MPI" "$P" train --model "$dir/m" --mpi
echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
