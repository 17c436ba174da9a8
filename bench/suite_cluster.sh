#!/bin/sh
# The cluster benchmark suite: bench/suite_cluster.sh BUILD [--smoke]
#
# Runs BUILD/bench/bench_cluster, which starts one node in its own process
# and the others as child processes on 127.0.0.1, and writes
# BUILD/bench/cluster.tsv (scenario system value unit better), printed with
# bench/table.sh. Scenarios: detect-crash (ms), detect-silent (ms),
# presence-p99 (ms), remote-send (messages/s; with limit-tcp-lines, the
# same lines through bare loopback TCP in the same run, so the table shows
# the ratio), and false-deaths (members
# declared dead among 3 nodes in network namespaces with 5% loss and 50 ms
# delay on every host's egress for 60 s: bench/cluster_false_deaths.sh;
# skipped with the reason where namespaces are not available).
#
# --smoke: every scenario once at tiny sizes with shrunk timers, checking
# that each event arrives and each count is exact; never times, writes no
# TSV. Part of `make test`.
#
# HERMES_BENCH_REPEAT=N runs the program N times and keeps the median.
set -u
. bench/lib.sh
build=${1:?usage: bench/suite_cluster.sh BUILD [--smoke]}
smoke=0
[ "${2:-}" = --smoke ] && smoke=1
repeat=${HERMES_BENCH_REPEAT:-1}
out=$build/bench
prog=$out/bench_cluster
tsv=$out/cluster.tsv
log=$out/cluster.log
mkdir -p "$out"
if [ ! -x "$prog" ]; then
    echo "suite_cluster: $prog is missing; run make first" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ $smoke = 1 ]; then
    if ! timeout 120 "$prog" --smoke >"$tmp/out" 2>"$tmp/err"; then
        echo "smoke cluster FAILED:"
        cat "$tmp/out" "$tmp/err"
        exit 1
    fi
    sed 's/^/  /' "$tmp/out"
    exit 0
fi

printf 'running the cluster suite (%s run(s)) ' "$repeat"
: >"$log"
: >"$tmp/rows"
i=0
status=0
while [ $i -lt "$repeat" ]; do
    i=$((i + 1))
    echo "== run $i" >>"$log"
    if ! timeout 900 "$prog" >"$tmp/out" 2>>"$log"; then
        echo "FAILED (see $log)"
        status=1
        break
    fi
    awk -F '\t' 'NF == 5' "$tmp/out" >>"$tmp/rows"
    printf '.'
done
sh bench/cluster_false_deaths.sh "$build" "${HERMES_FALSE_DEATHS_S:-60}" \
    >"$tmp/fd" 2>>"$log"
awk -F '\t' 'NF == 5' "$tmp/fd" >>"$tmp/rows"
skipped=$(grep '^skipped' "$tmp/fd")
echo
{
    printf 'scenario\tsystem\tvalue\tunit\tbetter\n'
    # The median of each (scenario, system) over the runs.
    bench_median "$tmp/rows"
} >"$tsv"
printf '%s, %s, load %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(nproc) cores" "$(bench_load)"
sh bench/table.sh "$tsv"
[ -n "$skipped" ] && echo "$skipped"
exit $status
