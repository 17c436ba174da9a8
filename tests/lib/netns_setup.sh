# tests/lib/netns_setup.sh: the set-up every network-namespace fault script
# shares (tests/cluster/netns_faults.sh, tests/apps/mqtt/netns_partition.sh,
# bench/cluster_false_deaths.sh). Sourced, never run: mk/run-tests.sh
# leaves tests/lib/ out.
#
# A script sets NETNS_NAME (its name in messages) and sources this file
# from the checkout's root (the scripts run from there), then:
#   netns_enter SECONDS PKG... "$@"  outside: checks what namespaces need
#       (root, unshare, ip, iptables, the Debian packages PKG...; the list
#       ends at "--"), and runs the script again under `unshare -n` (no route
#       out of the machine) bounded by `timeout`; skips (exit 0, a message
#       saying why) where something is missing. Inside (NETNS_INNER=1) it
#       returns at once.
#   netns_begin PREFIX  inside: a temporary folder $tmp, namespaces named
#       PREFIX<pid>x1..3 on one bridge (hosts 10.77.0.1-3), a cluster
#       secret in $tmp/secret, and a trap that kills every process whose pid
#       is in $tmp/*.pid, deletes the namespaces and the folder. A script
#       may define netns_on_exit (run first, e.g. to print logs when
#       failed=1).
#   netns_await FILE PATTERN N WHAT [TENTHS]  until FILE has N lines
#       matching PATTERN (a bound of TENTHS tenths of a second, 300 by
#       default): prints "ok   WHAT", or "NAME: FAILED: WHAT", sets
#       failed=1 and returns 1.
# The tool, netns.sh, is found by netns_find_tool (below) into $netns.
# Nothing here asserts on time: the bounds only end a hang.

failed=0

skip() { echo "$NETNS_NAME: SKIPPED: $1"; exit 0; }
fail() { echo "$NETNS_NAME: FAILED: $1"; failed=1; }

# The namespace tool, shared/tools/netns.sh: $HERMES_NETNS_TOOL if set,
# else ../shared/tools/netns.sh next to the checkout, else
# /work/shared/tools/netns.sh. Sets $netns, or says why there is none and
# returns 1.
netns_find_tool() {
    netns=
    if [ -n "${HERMES_NETNS_TOOL:-}" ]; then
        if [ -f "$HERMES_NETNS_TOOL" ]; then
            netns=$HERMES_NETNS_TOOL
            return 0
        fi
        echo "$NETNS_NAME: HERMES_NETNS_TOOL=$HERMES_NETNS_TOOL is not a file"
        return 1
    fi
    for t in "$(pwd)/../shared/tools/netns.sh" /work/shared/tools/netns.sh; do
        if [ -f "$t" ]; then
            netns=$t
            return 0
        fi
    done
    echo "$NETNS_NAME: no netns.sh (set HERMES_NETNS_TOOL, or have" \
        "../shared/tools/netns.sh or /work/shared/tools/netns.sh)"
    return 1
}

netns_enter() {
    # Its own name: a script's variables (bench/cluster_false_deaths.sh has
    # $seconds) live in the same shell and must survive the call.
    netns_bound=$1
    shift
    pkgs=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        pkgs="$pkgs $1"
        shift
    done
    [ $# -gt 0 ] && shift
    [ "${NETNS_INNER:-}" = 1 ] && return 0
    netns_find_tool || skip "the namespace tool is missing"
    echo "$NETNS_NAME: namespaces by $netns" >&2
    [ "$(id -u)" = 0 ] || skip "needs root for network namespaces"
    command -v unshare >/dev/null 2>&1 || skip "no unshare"
    command -v ip >/dev/null 2>&1 || skip "no ip (iproute2)"
    unshare -n true 2>/dev/null || skip "namespaces are not allowed here"
    if ! command -v iptables >/dev/null 2>&1; then
        sh mk/deps.sh iptables >/dev/null 2>&1 || skip "cannot install iptables"
    fi
    if [ -n "$pkgs" ]; then
        # shellcheck disable=SC2086 # one word a package
        sh mk/deps.sh $pkgs >/dev/null 2>&1 || skip "cannot install$pkgs"
    fi
    NETNS_INNER=1 HERMES_NETNS_TOOL=$netns \
        exec timeout -k 5 "$netns_bound" unshare -n sh "$0" "$@"
}

netns_cleanup() {
    command -v netns_on_exit >/dev/null 2>&1 && netns_on_exit
    for f in "$tmp"/*.pid; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    done
    bash "$netns" down >/dev/null 2>&1
    rm -rf "$tmp"
}

netns_begin() {
    netns_find_tool || skip "the namespace tool is missing"
    tmp=$(mktemp -d)
    export NETNS_PREFIX="$1$$x" NETNS_RUNDIR="$tmp/run"
    mkdir -p "$NETNS_RUNDIR"
    trap netns_cleanup EXIT
    trap 'exit 1' INT TERM
    bash "$netns" up >/dev/null 2>&1 || skip "netns.sh up failed"
    printf '%s cluster secret for a test\n' "$NETNS_NAME" >"$tmp/secret"
    chmod 600 "$tmp/secret"
}

netns_await() {
    i=0
    while c=$(grep -c -E "$2" "$1" 2>/dev/null); [ "${c:-0}" -lt "$3" ]; do
        i=$((i + 1))
        [ $i -gt "${5:-300}" ] && { fail "$4"; return 1; }
        sleep 0.1
    done
    echo "ok   $4"
}
