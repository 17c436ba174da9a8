#!/bin/sh
# mk/demo-chat.sh BUILD: `make demo-chat`. Starts three chat servers on
# loopback that form one cluster, prints how to connect, and stops them all
# on Ctrl-C.
#   node n1: clients 127.0.0.1:7001, cluster 127.0.0.1:7101
#   node n2: clients 127.0.0.1:7002, cluster 127.0.0.1:7102 (joins n1)
#   node n3: clients 127.0.0.1:7003, cluster 127.0.0.1:7103 (joins n1)
set -eu
build=${1:-build}
dir=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# The cluster's shared secret: 32 random bytes, readable by us only.
umask 077
head -c 32 /dev/urandom > "$dir/secret"

for i in 1 2 3; do
    join=""
    [ "$i" != 1 ] && join="--join 127.0.0.1:7101"
    # shellcheck disable=SC2086 # $join is zero or two words
    "$build/hermes-chat" server --listen 127.0.0.1:700$i --log-level info \
        --node n$i --cluster-listen 127.0.0.1:710$i $join \
        --cluster-secret-file "$dir/secret" 2>"$dir/n$i.log" &
    pids="$pids $!"
done
sleep 1
cat <<MSG
Three chat servers are running (logs: $dir/n1.log, n2.log, n3.log).
In three other terminals:

  $build/hermes-chat client --connect 127.0.0.1:7001 --connect 127.0.0.1:7002 --user alice
  $build/hermes-chat client --connect 127.0.0.1:7002 --connect 127.0.0.1:7003 --user bob
  $build/hermes-chat client --connect 127.0.0.1:7003 --connect 127.0.0.1:7001 --user carol

Then try /join lobby, a line of text, /msg bob hi, /who, /rooms. Kill a
server (kill the process listening on 700x) and watch its users go offline
and their clients move to their second server. Ctrl-C here stops all three.
MSG
wait
