#!/bin/sh
# tests/apps/mqtt/netns_partition.sh BUILD: an MQTT cluster partitioned and
# healed on a real network.
#
# Three hermes-mqtt nodes, each in its own network namespace on one bridge
# (shared/tools/netns.sh, found and set up by tests/lib/netns_setup.sh:
# hosts 10.77.0.1-3), clients (mosquitto_pub and
# mosquitto_sub) run inside the namespaces. Node 3 is cut off from nodes 1
# and 2 (iptables on its side; its own loopback and address still work):
#   1. nodes 1 and 2 declare it dead; both sides keep serving their own
#      clients (a publish on each side reaches a subscriber on that side);
#   2. meanwhile a retained message is set on each side;
#   3. after the heal: node 3 is up again on node 1, the retained messages
#      of both sides are seen from every node, and a subscription made on
#      node 3 before the partition receives a publish made on node 1 (its
#      filter came back).
# The controller runs under `unshare -n`, so nothing leaves the machine;
# everything is torn down on exit. Skips (exit 0 with a message) where
# namespaces or iptables are missing. Waits poll (bounded); nothing asserts
# on time.
set -u
build=${1:?usage: tests/apps/mqtt/netns_partition.sh BUILD}
bin=$(pwd)/$build/hermes-mqtt
NETNS_NAME=netns_partition
. tests/lib/netns_setup.sh

[ -x "$bin" ] || { echo "netns_partition: $bin missing; run make" >&2; exit 1; }
netns_enter 150 mosquitto-clients -- "$@"
netns_on_exit() {
    [ $failed = 1 ] || return 0
    for n in 1 2 3; do
        echo "--- node $n"
        tail -n 30 "$tmp/log$n" 2>/dev/null
    done
}
netns_begin hq

# Runs in the foreground only: a background command must be started with
# ip netns exec itself, so that $! is its pid (cleanup kills by pid).
inns() { ns=$1; shift; ip netns exec "${NETNS_PREFIX}$ns" "$@"; }

start() { # N: node nN on host N, joining node 1
    ip netns exec "${NETNS_PREFIX}$1" "$bin" -p 1883 --node "n$1" --cluster-listen "10.77.0.$1:7000" \
        --join 10.77.0.1:7000 --cluster-secret-file "$tmp/secret" \
        >/dev/null 2>"$tmp/log$1" &
    echo $! >"$tmp/node$1.pid"
}

# sub N TOPIC NAME: a background mosquitto_sub on node N (QoS 1), lines
# "topic payload" into $tmp/NAME.
sub() {
    ip netns exec "${NETNS_PREFIX}$1" mosquitto_sub -h 127.0.0.1 -p 1883 \
        -q 1 -t "$2" -v >"$tmp/$3" 2>/dev/null &
    echo $! >"$tmp/$3.pid"
}

pub() { # N TOPIC MESSAGE [more mosquitto_pub flags]
    pn=$1 pt=$2 pm=$3
    shift 3
    inns "$pn" mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t "$pt" -m "$pm" "$@"
}

# until_got N FILE TOPIC LINE WHAT: publish LINE on TOPIC on node N every
# 0.2 s until FILE has it (filters travel one network delay; 30 s bound).
until_got() {
    i=0
    until grep -q -x "$3 $4" "$tmp/$2" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 150 ] && { fail "$5"; return 1; }
        pub "$1" "$3" "$4"
        sleep 0.2
    done
    echo "ok   $5"
}

# retained N FILTER: the retained messages a new subscription on node N
# gets (-W 2: the broker sends them at once; the bound only ends the read).
retained() {
    inns "$1" mosquitto_sub -h 127.0.0.1 -p 1883 -t "$2" -v --retained-only \
        -W 2 2>/dev/null | sort
}

for n in 1 2 3; do start $n; done
for n in 1 2 3; do
    netns_await "$tmp/log$n" 'MQTT-LISTEN' 1 "node $n started" || {
        echo "netns_partition: SKIPPED: node $n did not start in its namespace"
        failed=0
        exit 0
    }
done
netns_await "$tmp/log1" 'member n2 .*: up' 1 "node 1 sees node 2" &&
netns_await "$tmp/log1" 'member n3 .*: up' 1 "node 1 sees node 3" &&
netns_await "$tmp/log2" 'member n3 .*: up' 1 "node 2 sees node 3 (full mesh)" ||
    exit 1

sub 3 'before/#' before3
until_got 1 before3 before/x m0 "a publish on node 1 reaches node 3" || exit 1

bash "$netns" part 3 1
bash "$netns" part 3 2
netns_await "$tmp/log1" 'member n3 .*: dead' 1 "cut-off node 3 is dead on node 1" &&
netns_await "$tmp/log2" 'member n3 .*: dead' 1 "cut-off node 3 is dead on node 2" ||
    exit 1

# Both sides serve.
sub 2 'side/#' side2
sub 3 'side/#' side3
until_got 1 side2 side/a from1 "the majority side serves (node 1 to node 2)"
until_got 3 side3 side/b from3 "the cut-off node serves its own clients"
pub 1 keep/a majority -r
pub 3 keep/b minority -r

bash "$netns" unpart 3 1
bash "$netns" unpart 3 2
netns_await "$tmp/log1" 'member n3 .*: up' 2 "node 3 is up again on node 1" || exit 1

# Converged: both sides' retained messages from every node.
want=$(printf 'keep/a majority\nkeep/b minority')
for n in 1 2 3; do
    i=0
    until [ "$(retained $n 'keep/#')" = "$want" ]; do
        i=$((i + 1))
        [ $i -gt 10 ] && { fail "node $n has both sides' retained messages"; break; }
    done
    [ $i -le 10 ] && echo "ok   node $n has both sides' retained messages"
done
# Filters came back: node 3's old subscription hears node 1 again.
until_got 1 before3 before/x m1 "node 3's subscription gets node 1's publishes after the heal"

# A sanitizer build reports at exit: stop the nodes and read their logs.
for n in 1 2 3; do
    kill "$(cat "$tmp/node$n.pid")" 2>/dev/null
done
for n in 1 2 3; do
    pid=$(cat "$tmp/node$n.pid")
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    if grep -q -E 'Sanitizer|runtime error:' "$tmp/log$n"; then
        fail "node $n: a sanitizer report"
    fi
done

exit $failed
