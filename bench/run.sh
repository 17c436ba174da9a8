#!/bin/sh
# Runs benchmark suites: bench/run.sh BUILD SUITE|all|smoke
#   SUITE  runs bench/suite_SUITE.sh BUILD (full sizes)
#   all    runs every suite, in name order
#   smoke  runs every suite with --smoke: tiny sizes, checks results, never
#          times; part of `make test` so that no benchmark rots.
# Each suite writes build/bench/<suite>.tsv with the header
#   scenario<TAB>system<TAB>value<TAB>unit<TAB>better
# and prints its table with bench/table.sh.
set -u
build=$1
what=$2
mkdir -p build/bench
status=0
for s in bench/suite_*.sh; do
    [ -f "$s" ] || continue
    name=$(basename "$s" .sh | sed 's/^suite_//')
    case $what in
    all) sh "$s" "$build" || status=1 ;;
    smoke) sh "$s" "$build" --smoke || { echo "bench smoke: $name FAILED"; status=1; } ;;
    "$name") sh "$s" "$build"; exit $? ;;
    esac
done
if [ "$what" != all ] && [ "$what" != smoke ]; then
    echo "bench/run.sh: no suite named '$what' (bench/suite_$what.sh)" >&2
    exit 2
fi
exit $status
