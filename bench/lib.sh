# bench/lib.sh: what the benchmark suites share, sourced by
# bench/suite_*.sh (from the repository's root, as they run) with
# `. bench/lib.sh`: how busy the machine is, the machine header every
# suite writes beside its TSV, and the median of repeated rows.
#
# The load average lags by minutes, so the suites also take the share of
# idle CPU time over one second (bench_idle_pct) at the start and the end.
# POSIX sh; every function's output goes to stdout, and the ones that set
# variables say which.

# The 1, 5 and 15 minute load averages.
bench_load() { cut -d ' ' -f 1-3 /proc/loadavg; }

# Percentage of CPU time idle over one second, from /proc/stat.
bench_idle_pct() {
    a=$(head -n 1 /proc/stat); sleep 1; b=$(head -n 1 /proc/stat)
    echo "$a
$b" | awk '{ t = 0; for (i = 2; i <= NF; i++) t += $i; tot[NR] = t; idl[NR] = $5 + $6 }
        END { d = tot[2] - tot[1]; if (d > 0) printf "%d", 100 * (idl[2] - idl[1]) / d; else print 100 }'
}

# Sets date_utc, cpu (model name), ncpu, load_start and idle_start.
bench_machine_start() {
    date_utc=$(date -u '+%Y-%m-%d %H:%M UTC')
    cpu=$(awk -F ': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    ncpu=$(nproc)
    load_start=$(bench_load)
    idle_start=$(bench_idle_pct)
}

# Sets load_end and idle_end.
bench_machine_end() {
    load_end=$(bench_load)
    idle_end=$(bench_idle_pct)
}

# bench_machine_file FILE REPEAT: writes the machine header (tab-separated
# key and value lines) from what the two functions above set.
bench_machine_file() {
    cat >"$1" <<EOF2
date	$date_utc
cpu	$ncpu x $cpu
load_start	$load_start
idle_start	$idle_start
load_end	$load_end
idle_end	$idle_end
repeat	$2
EOF2
}

# bench_median ROWS: the median value of each (scenario, system) over the
# TSV rows in the file ROWS (scenario system value unit better), one row
# each, sorted by scenario and system.
bench_median() {
    sort -t "$(printf '\t')" -k1,1 -k2,2 -k3,3g "$1" | awk -F '\t' '
        { k = $1 FS $2; n[k]++; v[k, n[k]] = $3; rest[k] = $4 FS $5
          if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
        END { for (i = 1; i <= m; i++) { k = order[i]
                printf "%s\t%s\t%s\n", k, v[k, int((n[k] + 1) / 2)], rest[k] } }'
}
