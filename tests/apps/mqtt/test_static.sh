#!/bin/sh
# `make static`: hermes-mqtt and hermes-mqtt-passwd as static executables
# that need no shared library, checked by running them: a password file made
# by the tool, and a broker using it that real clients talk to.
set -eu
build=${1:-build}
sh mk/deps.sh mosquitto-clients
make --no-print-directory BUILD="$build" static >/dev/null
for b in hermes-mqtt hermes-mqtt-passwd; do
    if ldd "$build/static/$b" >/dev/null 2>&1; then
        echo "FAIL: $build/static/$b is dynamically linked"; exit 1
    fi
done
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
"$build/static/hermes-mqtt-passwd" -b -c "$dir/passwd" alice 's3cret pass'
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous false\npassword_file %s\n' "$port" "$dir/passwd" >"$dir/mqtt.conf"
"$build/static/hermes-mqtt" -c "$dir/mqtt.conf" 2>"$dir/log" &
pid=$!
for i in $(seq 1 50); do
    mosquitto_pub -p "$port" -u alice -P 's3cret pass' -t probe -m x 2>/dev/null && break
    sleep 0.1
done
mosquitto_sub -p "$port" -u alice -P 's3cret pass' -t t -C 1 -W 5 >"$dir/got" &
sub=$!
sleep 0.5
mosquitto_pub -p "$port" -u alice -P 's3cret pass' -t t -m from-static
wait "$sub"
[ "$(cat "$dir/got")" = from-static ] || { echo "FAIL: got '$(cat "$dir/got")'"; cat "$dir/log"; exit 1; }
if mosquitto_pub -p "$port" -u alice -P wrong -t t -m x 2>/dev/null; then
    echo "FAIL: a wrong password was accepted"; exit 1
fi
echo "ok static binaries: password tool, broker, authenticated pub/sub"
