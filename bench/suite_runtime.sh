#!/bin/sh
# The runtime benchmark suite: bench/suite_runtime.sh BUILD [--smoke]
#
# Runs, in one run, every scenario on Hermes (BUILD/bench/bench_runtime), on
# this machine's limits (BUILD/bench/bench_limits) and on the peers a user
# would pick instead: Erlang/OTP and Go (bench/peers/, compiled at run time
# into BUILD/bench/peers/). Writes BUILD/bench/runtime.tsv, one line per
# measurement (scenario system value unit better), and prints it as a table
# with bench/table.sh, between a header naming the date, the machine and
# its load, and the list of anything skipped or failed. A missing toolchain
# is installed with mk/deps.sh; if that fails, its rows are skipped with the
# reason. Each scenario runs in a fresh process, one after the other, so
# nothing else of ours competes for the two cores.
#
# --smoke: every program once at tiny sizes, checking counts, tokens and
# replies, never timing; writes no TSV, installs nothing (peers whose
# toolchain is missing are skipped with a message). Part of `make test`.
#
# HERMES_BENCH_REPEAT=N runs each program N times and keeps the median.
set -u
. bench/lib.sh
build=${1:?usage: bench/suite_runtime.sh BUILD [--smoke]}
smoke=0
[ "${2:-}" = --smoke ] && smoke=1
repeat=${HERMES_BENCH_REPEAT:-1}
scenarios="pingpong ring fanin create churn timers request memory"

out=$build/bench
peers=$out/peers
tsv=$out/runtime.tsv
log=$out/runtime.log
mkdir -p "$out" "$peers"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
status=0
notes=""
note() { notes="$notes$1
"; }

for p in bench_runtime bench_limits; do
    if [ ! -x "$out/$p" ]; then
        echo "suite_runtime: $out/$p is missing; run make first" >&2
        exit 1
    fi
done

# ------------------------------------------------------------ toolchains

# have_tool CMD PKG: true if CMD is on PATH, installing PKG first if needed
# (never in smoke mode); otherwise notes why not.
have_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ $smoke = 1 ]; then
        note "skipped $1 peer: $1 not installed (smoke never installs; the full run does)"
        return 1
    fi
    if ! sh mk/deps.sh "$2" >>"$log" 2>&1; then
        note "skipped $1 peer: installing $2 failed (see $log)"
        return 1
    fi
    command -v "$1" >/dev/null 2>&1 && return 0
    note "skipped $1 peer: $2 installed but no $1 on PATH"
    return 1
}

# newer TARGET SRC...: true if TARGET exists and is newer than every SRC.
newer() {
    t=$1; shift
    [ -e "$t" ] || return 1
    for s in "$@"; do [ "$s" -nt "$t" ] && return 1; done
    return 0
}

erlang=0
if have_tool erlc erlang-nox && have_tool erl erlang-nox; then
    mkdir -p "$peers/erlang"
    if newer "$peers/erlang/hermes_bench.beam" bench/peers/erlang/*.erl ||
        erlc -o "$peers/erlang" bench/peers/erlang/*.erl >>"$log" 2>&1; then
        erlang=1
    else
        note "skipped erlang peer: erlc failed (see $log)"
        status=1
    fi
fi

go=0
gobin=$peers/go/hermes-bench-go
if have_tool go golang-go; then
    mkdir -p "$peers/go"
    abs=$(cd "$peers/go" && pwd)
    if newer "$gobin" bench/peers/go/*.go ||
        env GOCACHE="$abs/cache" GOPATH="$abs/path" GOFLAGS= \
            GO111MODULE=off GOTOOLCHAIN=local \
            go build -o "$gobin" bench/peers/go/*.go >>"$log" 2>&1; then
        go=1
    else
        note "skipped go peer: go build failed (see $log)"
        status=1
    fi
fi

# ------------------------------------------------------------ smoke

if [ $smoke = 1 ]; then
    run_smoke() { # label command...
        label=$1; shift
        if ! timeout 120 "$@" >"$tmp/out" 2>"$tmp/err"; then
            echo "smoke $label FAILED:"
            cat "$tmp/out" "$tmp/err"
            status=1
            return
        fi
        sed 's/^/  /' "$tmp/out"
    }
    run_smoke hermes "$out/bench_runtime" --smoke
    run_smoke limits "$out/bench_limits" --smoke
    [ $erlang = 1 ] && run_smoke erlang \
        erl +P 100000 -noshell -pa "$peers/erlang" -run hermes_bench main smoke
    [ $go = 1 ] && run_smoke go "$gobin" smoke
    printf '%s' "$notes"
    exit $status
fi

# ------------------------------------------------------------ the run

# measure SYSTEM SCENARIO COMMAND...: runs the command $repeat times and
# appends the median of each row it prints to the raw rows file.
measure() {
    sys=$1 scen=$2; shift 2
    : >"$tmp/rows"
    i=0
    while [ $i -lt "$repeat" ]; do
        i=$((i + 1))
        echo "== $scen $sys (run $i): $*" >>"$log"
        if ! timeout 900 "$@" >"$tmp/out" 2>>"$log"; then
            note "FAILED $scen on $sys (exit status $?; see $log)"
            status=1
            return
        fi
        awk -F '\t' 'NF == 5' "$tmp/out" >>"$tmp/rows"
        cat "$tmp/out" >>"$log"
    done
    # The median of each (scenario, system) over the repeats.
    bench_median "$tmp/rows" >>"$tmp/all"
    printf '.'
}

# targets TSV: the targets for the runtime on this machine, each
# with the measured figure and whether it is met.
targets() {
    awk -F '\t' '
    NR > 1 { v[$1, $2] = $3 }
    function ratio(s, peer, lower) {
        if (v[s, "hermes"] == "" || v[s, peer] == "" || v[s, "hermes"] == 0)
            return ""
        return lower ? v[s, peer] / v[s, "hermes"] : v[s, "hermes"] / v[s, peer]
    }
    function show(what, got, want, ok, fmt) {
        if (got == "") { printf "  %-34s %12s  (no figure)\n", what, "-"; return }
        printf "  %-34s " fmt "  %s\n", what, got, ok ? "met" : "MISSED (want " want ")"
    }
    END {
        print "targets (issue 3):"
        r = ratio("pingpong", "go", 0); show("pingpong, Hermes/Go", r, ">= 2x", r >= 2, "%11.2fx")
        r = ratio("pingpong", "erlang", 0); show("pingpong, Hermes/Erlang", r, ">= 3x", r >= 3, "%11.2fx")
        r = ratio("ring", "erlang", 0); show("ring, Hermes/Erlang", r, ">= 3x", r >= 3, "%11.2fx")
        # fanin has two forms in the issue: 30M msg/s, and "at least a third
        # of the raw MPSC stream" measured in the same run (the issue asks
        # for same-run ratios). Both are shown; on this machine the raw
        # stream itself measures 26-52M, so 30M is near the hardware limit.
        h = v["fanin", "hermes"]; show("fanin, msg/s", h, ">= 30M", h >= 30e6, "%12.3g")
        r = ratio("fanin", "limit-mpsc", 0); show("fanin, Hermes/raw MPSC stream", r, ">= 0.33x", r != "" && r >= 1 / 3, "%11.2fx")
        h = v["create", "hermes"]; show("create 1M, s", h, "<= 0.3 s", h != "" && h <= 0.3, "%12.3g")
        r = ratio("create", "go", 1); show("create, Go time / Hermes time", r, ">= 3x", r >= 3, "%11.2fx")
        h = v["timers-cpu", "hermes"]; show("timers, CPU ns per timer", h, "<= 200", h != "" && h <= 200, "%12.4g")
        h = v["timers-p99", "hermes"]; show("timers, p99 lateness ms", h, "<= 5", h != "" && h <= 5, "%12.4g")
        h = v["memory", "hermes"]; show("memory, B per parked receiver", h, "<= 128", h != "" && h <= 128, "%12.4g")
    }' "$1"
}


bench_machine_start
: >"$log"
: >"$tmp/all"
printf 'running the runtime suite (%s scenarios, %s run(s) each) ' \
    "$(echo $scenarios | wc -w)" "$repeat"
for s in $scenarios; do
    measure hermes "$s" "$out/bench_runtime" "$s"
    case $s in
    pingpong | fanin) measure limits "$s" "$out/bench_limits" "$s" ;;
    esac
    [ $erlang = 1 ] && measure erlang "$s" \
        erl +P 4000000 -noshell -pa "$peers/erlang" -run hermes_bench main full "$s"
    [ $go = 1 ] && measure go "$s" "$gobin" full "$s"
done
echo
bench_machine_end

# Rows in the order of $scenarios (the limits print their request rows
# while measuring pingpong), keeping each scenario's rows in run order.
{
    printf 'scenario\tsystem\tvalue\tunit\tbetter\n'
    awk -F '\t' -v list="$scenarios" '
        BEGIN { n = split(list, s, " "); for (i = 1; i <= n; i++) rank[s[i]] = i }
        { base = $1; sub(/-.*/, "", base); printf "%d\t%s\n", rank[base], $0 }' \
        "$tmp/all" | sort -s -t "$(printf '\t')" -k1,1n | cut -f 2-
} >"$tsv"
bench_machine_file "$out/runtime.machine" "$repeat"

# Busy: less than 85% idle CPU at the start or the end. The load average
# lags by minutes, so it is printed but not used to decide.
busy=""
if [ "$idle_start" -lt 85 ] || [ "$idle_end" -lt 85 ]; then
    busy=" -- the machine was BUSY during the run: figures are noisy"
fi
echo "Hermes runtime suite, $date_utc"
echo "machine: nproc $ncpu, $cpu; load average $load_start at start ($idle_start% idle), $load_end at end ($idle_end% idle)$busy"
echo "median of $repeat run(s) per figure; raw output in $log"
echo
sh bench/table.sh "$tsv"
echo
targets "$tsv"
[ -n "$notes" ] && { echo; printf '%s' "$notes"; }
echo
echo "results: $tsv"
exit $status
