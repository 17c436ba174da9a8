#!/bin/sh
# bench/cluster_false_deaths.sh BUILD SECONDS: the false-deaths scenario.
#
# Three Hermes nodes in network namespaces (../shared/tools/netns.sh), with
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
root=$(pwd)
bin=$root/$build/tests/cluster/test_node
netns=$root/../shared/tools/netns.sh

skip() { echo "skipped false-deaths: $1"; exit 0; }

if [ "${3:-}" != inner ]; then
    [ -x "$bin" ] || skip "$bin missing"
    [ -f "$netns" ] || skip "no $netns"
    [ "$(id -u)" = 0 ] || skip "needs root for network namespaces"
    unshare -n true 2>/dev/null || skip "namespaces are not allowed here"
    sh mk/deps.sh iptables libnetfilter-queue-dev >/dev/null 2>&1 ||
        skip "cannot install iptables and libnetfilter-queue-dev"
    exec timeout $((seconds + 120)) unshare -n sh "$0" "$build" "$seconds" inner
fi

tmp=$(mktemp -d)
export NETNS_PREFIX="hf$$x" NETNS_RUNDIR="$tmp/run"
mkdir -p "$NETNS_RUNDIR"
cleanup() {
    for n in 1 2 3; do bash "$netns" undelay $n >/dev/null 2>&1; done
    for f in "$tmp"/pid*; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    done
    bash "$netns" down >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

bash "$netns" up >/dev/null 2>&1 || skip "netns.sh up failed"
printf 'false deaths cluster secret\n' >"$tmp/secret"
chmod 600 "$tmp/secret"
for n in 1 2 3; do
    mkfifo "$tmp/in$n"
    ip netns exec "${NETNS_PREFIX}$n" env HM_TEST_NODE=1 "$bin" \
        --node "n$n" --cluster-listen "10.77.0.$n:7000" \
        --join 10.77.0.1:7000 --cluster-secret-file "$tmp/secret" \
        <"$tmp/in$n" >"$tmp/out$n" 2>"$tmp/err$n" &
    echo $! >"$tmp/pid$n"
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
