#!/bin/sh
# Builds and runs every libFuzzer target: sh mk/fuzz.sh [SECONDS]
#
# Each fuzz/fuzz_<name>.c becomes build/fuzz/fuzz_<name>, compiled with
# clang (-fsanitize=fuzzer,address,undefined) and linked against static
# libraries of every layer (runtime, net, cluster, apps/mqtt, apps/chat)
# built with clang and the same sanitizers into build/fuzz/. Archives, not
# object lists, so a target pulls in only what it calls. New targets need no
# change here: drop fuzz/fuzz_<name>.c and a seed corpus in fuzz/corpus/<name>/.
#
# FUZZ_ONLY="name ..." builds and runs only those targets (a long run of one
# target: FUZZ_ONLY=hp sh mk/fuzz.sh 600). A dictionary in
# fuzz/dict/<name>.dict is passed with -dict.
#
# Each target runs SECONDS (default 20) over its seed corpus; new inputs go to
# build/fuzz/corpus/<name>/ (the repository's corpus is only read). A crash
# stops the run, leaves build/fuzz/crash-<name>-* and exits non-zero: turn it
# into a regression test (a unit test or a file in fuzz/corpus/<name>/).
set -eu
seconds=${1:-20}
sh mk/deps.sh clang-14 libclang-rt-14-dev libjansson-dev libssl-dev libsqlite3-dev libhiredis-dev
out=build/fuzz
CC=${FUZZ_CC:-clang-14}
command -v "$CC" >/dev/null 2>&1 || CC=clang
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_GNU_SOURCE -O1 -g -pthread -I. -Wall -Wno-unused-parameter $SAN"
LAYERS="apps/chat apps/mqtt cluster net runtime"
mkdir -p "$out/obj" "$out/lib"

libs=""
for layer in $LAYERS; do
    srcs=$(ls "$layer"/*.c 2>/dev/null | grep -v '/main\.c$' || true)
    [ -n "$srcs" ] || continue
    lib="$out/lib/libhm_$(echo "$layer" | tr / _).a"
    objs=""
    for src in $srcs; do
        obj="$out/obj/${src%.c}.o"
        mkdir -p "$(dirname "$obj")"
        "$CC" $CFLAGS -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
        objs="$objs $obj"
    done
    rm -f "$lib"
    ar rcs "$lib" $objs
    libs="$libs $lib"
done

status=0
for src in fuzz/fuzz_*.c; do
    [ -f "$src" ] || continue
    name=$(basename "$src" .c | sed 's/^fuzz_//')
    case " ${FUZZ_ONLY:-$name} " in *" $name "*) ;; *) continue ;; esac
    bin="$out/fuzz_$name"
    dict=""
    [ -f "fuzz/dict/$name.dict" ] && dict="-dict=fuzz/dict/$name.dict"
    echo "== fuzz $name (${seconds}s)"
    "$CC" $CFLAGS -fsanitize=fuzzer "$src" $libs -ljansson -lcrypto -lsqlite3 -lhiredis -lm \
        -o "$bin"
    mkdir -p "$out/corpus/$name" "fuzz/corpus/$name"
    if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        $dict -print_final_stats=0 -artifact_prefix="$out/crash-$name-" \
        "$out/corpus/$name" "fuzz/corpus/$name" >"$out/$name.log" 2>&1; then
        echo "!! fuzz $name FAILED (see $out/$name.log and $out/crash-$name-*)"
        tail -n 30 "$out/$name.log"
        status=1
    else
        grep -E '^#[0-9]+.*DONE' "$out/$name.log" | tail -n 1 || true
    fi
done
exit $status
