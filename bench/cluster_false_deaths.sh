#!/bin/sh
# bench/cluster_false_deaths.sh BUILD SECONDS: the false-deaths scenario.
#
# Three Hermes nodes in network namespaces (shared/tools/netns.sh, set up by
# tests/lib/netns_setup.sh), with
# the default failure-detector timers, and on every host's egress 50 ms of
# delay and 5% loss (netns.sh `delay`, through nfq_delay: this kernel has no
# netem). Counts the members declared dead by any node during SECONDS:
# every one is a false death, since no node fails. Prints one TSV row
#   false-deaths  hermes  N  count  lower
# or, where namespaces, iptables or libnetfilter-queue are unavailable, a
# line starting with "skipped". Run by bench/suite_cluster.sh (full runs).
set -u
build=${1:?usage: bench/cluster_false_deaths.sh BUILD SECONDS}
seconds=${2:-60}
bin=$(pwd)/$build/tests/cluster/test_node
NETNS_NAME=false-deaths
. tests/lib/netns_setup.sh
skip() { echo "skipped false-deaths: $1"; exit 0; }

[ -x "$bin" ] || skip "$bin missing"
netns_enter $((seconds + 120)) libnetfilter-queue-dev -- "$@"
netns_on_exit() {
    for n in 1 2 3; do bash "$netns" undelay $n >/dev/null 2>&1; done
}
netns_begin hf
for n in 1 2 3; do
    mkfifo "$tmp/in$n"
    ip netns exec "${NETNS_PREFIX}$n" env HM_TEST_NODE=1 "$bin" \
        --node "n$n" --cluster-listen "10.77.0.$n:7000" \
        --join 10.77.0.1:7000 --cluster-secret-file "$tmp/secret" \
        <"$tmp/in$n" >"$tmp/out$n" 2>"$tmp/err$n" &
    echo $! >"$tmp/node$n.pid"
done
exec 3>"$tmp/in1" 4>"$tmp/in2" 5>"$tmp/in3"

# The mesh: every node has reported both others up (bounded).
i=0
while [ "$(cat "$tmp"/out? 2>/dev/null | grep -c ' up$')" -lt 6 ]; do
    i=$((i + 1))
    [ $i -gt 300 ] && skip "the mesh did not form"
    sleep 0.1
done
for n in 1 2 3; do
    bash "$netns" delay $n 50 5 >/dev/null 2>&1 || skip "nfq_delay unavailable"
done
before=$(cat "$tmp"/out? | grep -c ' dead$')
sleep "$seconds"
after=$(cat "$tmp"/out? | grep -c ' dead$')
printf 'false-deaths\thermes\t%d\tcount\tlower\n' $((after - before))
echo "false-deaths: $(cat "$tmp"/out? | grep -c ' suspect$') suspicions in all" >&2
for fd in 3 4 5; do eval "echo quit >&$fd"; done
