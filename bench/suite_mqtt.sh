#!/bin/sh
# The MQTT benchmark suite: bench/suite_mqtt.sh BUILD [--smoke]
#
# Runs every scenario of the load generator (BUILD/bench/bench_mqtt_load)
# against Hermes (BUILD/hermes-mqtt) and mosquitto in the same run, twice:
# pinned (the broker on core 0 with taskset, the generator on core 1: a
# per-core comparison, since mosquitto is single-threaded) and unpinned.
# Each (scenario, system) gets a fresh broker on a free loopback port with
# the same generated configuration (mosquitto also gets set_tcp_nodelay,
# which Hermes always does, and logs only warnings and errors, as Hermes
# does without -v), so no run inherits another's memory or
# sessions; hermes and mosquitto alternate scenario by scenario. Writes
# BUILD/bench/mqtt.tsv (scenario system value unit better; scenario names
# end in -pinned or -unpinned) and prints it with bench/table.sh, between a
# header naming the date, the machine and its load before and after, and
# the list of anything skipped, failed or miscounted (lost, duplicated or
# reordered deliveries, from the generator's "# " lines). mosquitto is
# installed with mk/deps.sh if missing; if BUILD/hermes-mqtt does not exist
# yet, the Hermes rows are skipped with a message.
#
# --smoke: every scenario once at tiny sizes against whichever brokers
# exist, unpinned, checking counts (no loss, duplicate or reordering, every
# acknowledgement, every idle connection answering PINGREQ), never timing;
# writes no TSV and installs nothing. Part of `make test`.
#
# Two-node rows (system "hermes-2node"): qos0 and qos1 with the publisher
# on node 1 and the subscriber on node 2 of a two-node Hermes cluster
# (unpinned; both nodes share the machine), against the single-node rows
# of the same scenarios (mosquitto's is the baseline). The smoke run checks
# their counts too.
#
# HERMES_BENCH_REPEAT=N runs each (scenario, system) N times and keeps the
# median.
#
# Persistence (docs/mqtt.md): the qos1 scenario again with persistent
# subscribers (--persistent: CleanSession 0), as "qos1-persist-unpinned",
# against Hermes without persistence ("hermes", the baseline), with
# `persistence_durability always` ("hermes-always", the default policy),
# with `autosave_interval 1` ("hermes-interval1s") and mosquitto with
# `autosave_interval 1` ("mosquitto-autosave1s"), each with a fresh store
# directory; the table's ratio column "hermes / hermes-always" is then what
# the always policy costs. The smoke run checks both Hermes policies.
set -u
. bench/lib.sh
build=${1:?usage: bench/suite_mqtt.sh BUILD [--smoke]}
smoke=0
[ "${2:-}" = --smoke ] && smoke=1
repeat=${HERMES_BENCH_REPEAT:-1}
throughput="qos0 qos1 qos2 fanout100 fanout1000 fanin100 topics1000"
scenarios="$throughput latency1k latency10k storm idle10k idle100k"

out=$build/bench
gen=$out/bench_mqtt_load
tsv=$out/mqtt.tsv
log=$out/mqtt.log
mkdir -p "$out"
tmp=$(mktemp -d)
bpid="" bpid2=""
cleanup() {
    [ -n "$bpid" ] && kill "$bpid" 2>/dev/null
    [ -n "$bpid2" ] && kill "$bpid2" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
status=0
notes=""
note() { notes="$notes$1
"; }
: >"$log"

if [ ! -x "$gen" ]; then
    echo "suite_mqtt: $gen is missing; run make first" >&2
    exit 1
fi

# ------------------------------------------------------------ the brokers

systems=""
hermes=$build/hermes-mqtt
if [ -x "$hermes" ]; then
    systems="hermes"
else
    note "skipped hermes: $hermes does not exist yet (the broker, issue 5)"
fi
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ ! -x "$mosquitto" ] && [ $smoke = 0 ]; then
    sh mk/deps.sh mosquitto mosquitto-clients >>"$log" 2>&1
    mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
fi
if [ -x "$mosquitto" ]; then
    systems="$systems mosquitto"
elif [ $smoke = 1 ]; then
    note "skipped mosquitto: not installed (smoke never installs; the full run does)"
else
    note "skipped mosquitto: installing it failed (see $log)"
    status=1
fi

# Both brokers and the generator need a descriptor per connection: raise
# the soft limit as far as this process may (without CAP_SYS_RESOURCE the
# hard limit is a ceiling nobody here can lift).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)

# start_broker SYSTEM PIN: starts SYSTEM (under `taskset -c PIN` unless
# PIN is empty) on a free loopback port; sets bpid and bport. A SYSTEM
# named hermes-always, hermes-interval1s or mosquitto-autosave1s is that
# broker with persistence in a fresh directory (see the header).
nstore=0
store=""
start_broker() {
    bsys=$1 bpin=$2
    bport=$("$gen" --free-port)
    conf=$tmp/$bsys.conf
    nstore=$((nstore + 1))
    store=$tmp/store-$nstore
    {
        echo "listener $bport 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_inflight_messages 20"
        echo "max_queued_messages 1000"
        echo "max_connections -1"
        case $bsys in
        *-always | *-interval1s | *-autosave1s)
            mkdir -p "$store"
            echo "persistence true"
            echo "persistence_location $store/" ;;
        esac
        case $bsys in
        *-interval1s | *-autosave1s) echo "autosave_interval 1" ;;
        esac
        if [ "${bsys%%-*}" = mosquitto ]; then
            # Hermes logs warnings and errors only unless -v; so does
            # mosquitto with these (its default logs every connection).
            echo "set_tcp_nodelay true"
            echo "connection_messages false"
            echo "log_type error"
            echo "log_type warning"
        fi
    } >"$conf"
    case $bsys in
    hermes*) set -- "$hermes" -c "$conf" ;;
    mosquitto*) set -- "$mosquitto" -c "$conf" ;;
    esac
    [ -n "$bpin" ] && set -- taskset -c "$bpin" "$@"
    echo "== broker: $*" >>"$log"
    "$@" >>"$log" 2>&1 &
    bpid=$!
    if ! "$gen" --wait-port "$bport" 2>>"$log"; then
        stop_broker
        return 1
    fi
}

stop_broker() {
    kill "$bpid" 2>/dev/null
    wait "$bpid" 2>/dev/null
    bpid=""
    rm -rf "$store"
    if [ -n "${bpid2:-}" ]; then
        kill "$bpid2" 2>/dev/null
        wait "$bpid2" 2>/dev/null
        bpid2=""
    fi
}

# start_cluster: two Hermes nodes (n1, n2) on free loopback ports, n2
# joining n1; sets bpid, bport (node 1), bpid2, bport2 (node 2) once node 1
# sees node 2 up.
start_cluster() {
    # Four distinct ports from one call (separate calls may repeat one).
    set -- $("$gen" --free-port 4)
    bport=$1 bport2=$2 cport=$3 cport2=$4
    printf 'suite_mqtt two-node cluster secret\n' >"$tmp/secret"
    chmod 600 "$tmp/secret"
    for n in 1 2; do
        {
            [ $n = 1 ] && echo "listener $bport 127.0.0.1"
            [ $n = 2 ] && echo "listener $bport2 127.0.0.1"
            echo "allow_anonymous true"
            echo "max_inflight_messages 20"
            echo "max_queued_messages 1000"
            echo "node_name n$n"
            [ $n = 1 ] && echo "cluster_listen 127.0.0.1:$cport"
            [ $n = 2 ] && echo "cluster_listen 127.0.0.1:$cport2"
            echo "cluster_join 127.0.0.1:$cport"
            echo "cluster_secret_file $tmp/secret"
        } >"$tmp/n$n.conf"
    done
    echo "== cluster: $hermes -c n1.conf, n2.conf" >>"$log"
    "$hermes" -c "$tmp/n1.conf" 2>"$tmp/n1.log" &
    bpid=$!
    "$hermes" -c "$tmp/n2.conf" 2>"$tmp/n2.log" &
    bpid2=$!
    "$gen" --wait-port "$bport" 2>>"$log" &&
        "$gen" --wait-port "$bport2" 2>>"$log" || { stop_broker; return 1; }
    i=0
    until grep -q 'member n2 .*: up' "$tmp/n1.log"; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            cat "$tmp/n1.log" "$tmp/n2.log" >>"$log"
            stop_broker
            return 1
        fi
        sleep 0.1
    done
}

# run_one SYSTEM MODE SCENARIO [TAG FLAGS]: a fresh broker, one generator
# run (with FLAGS, rows tagged TAG-MODE); rows go to $tmp/rows, the "# "
# count lines to the log (and to the notes when something was lost,
# duplicated or reordered).
run_one() {
    sys=$1 mode=$2 scen=$3 rtag=${4:-}$2 gflags=${5:-}
    bcpu="" gpin="" subport=""
    if [ "$mode" = pinned ]; then
        bcpu=0
        gpin="taskset -c 1"
    fi
    if [ "$sys" = hermes-2node ]; then
        start_cluster && subport="--sub-port $bport2"
        started=$?
    else
        start_broker "$sys" "$bcpu"
        started=$?
    fi
    if [ $started != 0 ]; then
        note "FAILED $scen-$mode on $sys: the broker did not start (see $log)"
        status=1
        return
    fi
    echo "== $scen-$mode $sys" >>"$log"
    xargs=""
    [ "$scen" = idle100k ] && xargs="--conns $idle_n"
    # shellcheck disable=SC2086
    if ! timeout 300 $gpin "$gen" --port "$bport" $subport --scenario "$scen" \
        --system "$sys" --tag "-$rtag" --broker-pid "$bpid" $xargs $gflags \
        >"$tmp/out" 2>>"$log"; then
        note "FAILED $scen-$mode on $sys (see $log)"
        status=1
    fi
    stop_broker
    cat "$tmp/out" >>"$log"
    awk -F '\t' 'NF == 5' "$tmp/out" >>"$tmp/rows"
    awk '/^# / && / sent / && ($11 + $13 + $15 + $17 > 0) {
        sub(/^# /, ""); print "MISCOUNTED " $0 }
        /^# / && / held / && $5 != $11 {
        sub(/^# /, ""); print "NOT ALL HELD " $0 }' "$tmp/out" >>"$tmp/miscount"
}

# measure SYSTEM MODE SCENARIO [TAG FLAGS]: run_one $repeat times; appends the median
# of each row to $tmp/all.
measure() {
    : >"$tmp/rows"
    i=0
    while [ $i -lt "$repeat" ]; do
        i=$((i + 1))
        run_one "$@"
    done
    # The median of each (scenario, system), rows in the order printed.
    awk -F '\t' '
        { k = $1 FS $2; n[k]++; v[k, n[k]] = $3 + 0; rest[k] = $4 FS $5
          if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
        END { for (i = 1; i <= m; i++) { k = order[i]
                for (a = 2; a <= n[k]; a++)     # insertion sort, n is tiny
                    for (b = a; b > 1 && v[k, b - 1] > v[k, b]; b--) {
                        t = v[k, b]; v[k, b] = v[k, b - 1]; v[k, b - 1] = t }
                printf "%s\t%s\t%s\n", k, v[k, int((n[k] + 1) / 2)], rest[k] } }' \
        "$tmp/rows" >>"$tmp/all"
    printf '.'
}

# ------------------------------------------------------------ smoke

if [ $smoke = 1 ]; then
    for sys in $systems; do
        if ! start_broker "$sys" ""; then
            echo "smoke mqtt: $sys did not start:"
            tail -n 20 "$log"
            status=1
            continue
        fi
        for s in $scenarios; do
            if ! timeout 60 "$gen" --port "$bport" --scenario "$s" \
                --system "$sys" --broker-pid "$bpid" --smoke \
                >"$tmp/out" 2>"$tmp/err"; then
                echo "smoke mqtt $s on $sys FAILED:"
                cat "$tmp/out" "$tmp/err"
                status=1
            fi
            grep '^ok ' "$tmp/out" | sed 's/^/  /'
        done
        stop_broker
    done
    # The persistence policies (see the header), on the qos1 scenario.
    for sys in hermes-always hermes-interval1s; do
        [ -x "$hermes" ] || break
        if ! start_broker "$sys" ""; then
            echo "smoke mqtt: $sys did not start:"
            tail -n 20 "$log"
            status=1
            continue
        fi
        if ! timeout 60 "$gen" --port "$bport" --scenario qos1 \
            --system "$sys" --tag -persist --broker-pid "$bpid" \
            --persistent --smoke >"$tmp/out" 2>"$tmp/err"; then
            echo "smoke mqtt qos1 --persistent on $sys FAILED:"
            cat "$tmp/out" "$tmp/err"
            status=1
        fi
        grep '^ok ' "$tmp/out" | sed 's/^/  /'
        stop_broker
    done
    if [ -x "$hermes" ]; then
        for s in qos0 qos1; do
            if ! start_cluster; then
                echo "smoke mqtt: the two-node cluster did not start:"
                tail -n 20 "$log"
                status=1
                break
            fi
            if ! timeout 60 "$gen" --port "$bport" --sub-port "$bport2" \
                --scenario "$s" --system hermes-2node --broker-pid "$bpid" \
                --smoke >"$tmp/out" 2>"$tmp/err"; then
                echo "smoke mqtt $s on hermes-2node FAILED:"
                cat "$tmp/out" "$tmp/err"
                status=1
            fi
            grep '^ok ' "$tmp/out" | sed 's/^/  /'
            stop_broker
        done
    fi
    printf '%s' "$notes"
    exit $status
fi

# ------------------------------------------------------------ the run


modes="pinned unpinned"
if [ "$(nproc)" -lt 2 ]; then
    modes="unpinned"
    note "skipped the pinned runs: this machine has one core"
fi
run_list=$scenarios
# The large idle run holds 100,000 connections, or as many as the
# descriptor limit lets both the broker and the generator hold (each
# needs one per connection plus a few of its own), in thousands; its rows
# are named after the count (idle19k-*), the same for both brokers.
idle_n=100000
if [ "$nofile" -lt 100200 ]; then
    idle_n=$(((nofile - 200) / 1000 * 1000))
    if [ "$idle_n" -le 10000 ]; then
        run_list=$(echo "$scenarios" | sed 's/ idle100k//')
        note "skipped idle100k: RLIMIT_NOFILE is $nofile here and this process cannot raise it (no CAP_SYS_RESOURCE), so no more than idle10k fits"
    else
        note "idle100k ran with $idle_n connections (rows idle$((idle_n / 1000))k-*), not 100,000: RLIMIT_NOFILE is $nofile here (hard limit $(ulimit -Hn)) and this process cannot raise it (no CAP_SYS_RESOURCE); the broker has no table or scan sized by the connection count (docs/benchmarks-mqtt.md)"
    fi
fi

bench_machine_start
: >"$tmp/all"
: >"$tmp/miscount"
printf 'running the mqtt suite (%s scenarios x %s systems x %s modes) ' \
    "$(echo $run_list | wc -w)" "$(echo $systems | wc -w)" \
    "$(echo $modes | wc -w)"
for mode in $modes; do
    for s in $run_list; do
        for sys in $systems; do
            measure "$sys" "$mode" "$s"
        done
    done
done
# What each durability policy costs (see the header), unpinned.
persist_systems=""
[ -x "$hermes" ] && persist_systems="hermes hermes-always hermes-interval1s"
[ -x "$mosquitto" ] && persist_systems="$persist_systems mosquitto-autosave1s"
for sys in $persist_systems; do
    measure "$sys" unpinned qos1 persist- --persistent
done
if [ -x "$hermes" ]; then # publisher on node 1, subscriber on node 2
    for s in qos0 qos1; do
        measure hermes-2node unpinned "$s"
    done
fi
echo
bench_machine_end

{
    printf 'scenario\tsystem\tvalue\tunit\tbetter\n'
    cat "$tmp/all"
} >"$tsv"
bench_machine_file "$out/mqtt.machine" "$repeat"

busy=""
first=${load_start%% *}
last=${load_end%% *}
if [ "$idle_start" -lt 85 ] || [ "$idle_end" -lt 85 ] ||
    awk "BEGIN { exit !($first > 0.5 || $last > 0.5) }"; then
    busy=" -- the machine was BUSY (load before or after): figures are noisy"
fi
echo "Hermes MQTT suite, $date_utc"
echo "machine: nproc $ncpu, $cpu; load average $load_start before ($idle_start% idle), $load_end after ($idle_end% idle)$busy"
echo "median of $repeat run(s) per figure, each on a fresh broker; raw output in $log"
echo
sh bench/table.sh "$tsv"
[ -s "$tmp/miscount" ] && { echo; cat "$tmp/miscount"; }
[ -n "$notes" ] && { echo; printf '%s' "$notes"; }
echo
echo "results: $tsv"
exit $status
