#!/bin/sh
# Runs the test kinds named after the build folder and prints one summary.
#   unit:        every Criterion binary under BUILD/tests (not stress/)
#   stress:      every stress program under BUILD/tests/stress
#   smoke:       every benchmark suite once at tiny sizes (bench/run.sh --smoke)
#   integration: every tests/*/*.sh script (real processes, real sockets)
#                but those of tests/lib/ (helpers the scripts source)
# Exits non-zero if anything failed; the failures are listed at the end.
set -u
build=$1; shift
failed=""
count=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# A sanitizer report fails the run even where the test runner did not
# notice it (Criterion's forked workers report leaks after the verdict).
run() { # name, command...
    name=$1; shift
    count=$((count + 1))
    printf '== %s\n' "$name"
    "$@" >"$out" 2>&1
    rc=$?
    cat "$out"
    if [ $rc -ne 0 ] || grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$out"; then
        failed="$failed $name"
        printf '!! FAILED: %s\n' "$name"
    fi
}
for kind in "$@"; do
    case $kind in
    unit)
        for t in $(find "$build/tests" -type f -perm -u+x -name 'test_*' | sort); do
            run "$t" "$t" --jobs 2 --short-filename
        done ;;
    stress)
        for t in $(find "$build/tests/stress" -type f -perm -u+x -name 'stress_*' 2>/dev/null | sort); do
            run "$t" "$t"
        done ;;
    smoke)
        [ -f bench/run.sh ] && run "bench smoke" sh bench/run.sh "$build" smoke ;;
    integration)
        for t in $(find tests -name '*.sh' -path 'tests/*/*' \
                   ! -path 'tests/lib/*' | sort); do
            run "$t" sh "$t" "$build"
        done ;;
    esac
done
if [ -n "$failed" ]; then
    printf '\n%d failed:\n' "$(echo $failed | wc -w)"
    for f in $failed; do printf '  %s\n' "$f"; done
    exit 1
fi
printf '\nall %d passed\n' "$count"
