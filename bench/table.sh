#!/bin/sh
# Prints a suite's TSV (scenario system value unit better) as a table a
# person can read: one row per scenario, one column per system (hermes
# first, then the peers, then the limit-* baselines, each group in the order
# it appears; a ratio column drops the "limit-" prefix), then the ratio of Hermes to
# each other system, oriented so that a ratio above 1 means Hermes is better
# whichever way `better` points (for `lower`, the ratio is peer / hermes).
# Values print with a k/M/G suffix and 3-4 significant digits; a system with
# no row for a scenario shows "-". Usage: bench/table.sh FILE.tsv
[ -f "$1" ] || { echo "bench/table.sh: no file $1" >&2; exit 2; }
awk -F '\t' '
function human(v,    a) {
    a = (v < 0) ? -v : v
    if (a >= 1e9) return sprintf("%.3gG", v / 1e9)
    if (a >= 1e6) return sprintf("%.3gM", v / 1e6)
    if (a >= 1e4) return sprintf("%.3gk", v / 1e3)
    if (a >= 100) return sprintf("%.0f", v)
    return sprintf("%.3g", v)
}
NR == 1 { next }
NF >= 5 {
    key = $1; sys = $2
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if (!(sys in sysseen)) { sysseen[sys] = 1; all[++m] = sys }
    val[key, sys] = $3; unit[key] = $4; better[key] = $5
    if (length(key) > kw) kw = length(key)
    if (length($4) > uw) uw = length($4)
}
END {
    if (n == 0) { print "(no results)"; exit }
    # hermes first, then the peers, then the limit-* baselines, each group
    # in order of appearance.
    ns = 0
    if ("hermes" in sysseen) sysorder[++ns] = "hermes"
    for (j = 1; j <= m; j++)
        if (all[j] != "hermes" && all[j] !~ /^limit-/) sysorder[++ns] = all[j]
    for (j = 1; j <= m; j++) if (all[j] ~ /^limit-/) sysorder[++ns] = all[j]
    for (j = 1; j <= ns; j++) {
        vw[j] = length(sysorder[j]) < 7 ? 7 : length(sysorder[j])
        short = sysorder[j]; sub(/^limit-/, "", short)
        rh[j] = "h/" short
        rw[j] = length(rh[j]) < 6 ? 6 : length(rh[j])
    }
    if (kw < 8) kw = 8
    if (uw < 4) uw = 4
    printf "%-" kw "s  %-" uw "s", "scenario", "unit"
    for (j = 1; j <= ns; j++) printf "  %" vw[j] "s", sysorder[j]
    if ("hermes" in sysseen)
        for (j = 2; j <= ns; j++) printf "  %" rw[j] "s", rh[j]
    printf "\n"
    for (i = 1; i <= n; i++) {
        k = order[i]
        printf "%-" kw "s  %-" uw "s", k, unit[k]
        for (j = 1; j <= ns; j++) {
            v = val[k, sysorder[j]]
            printf "  %" vw[j] "s", (v == "") ? "-" : human(v + 0)
        }
        if (!("hermes" in sysseen)) { printf "\n"; continue }
        h = val[k, "hermes"]
        for (j = 2; j <= ns; j++) {
            v = val[k, sysorder[j]]
            if (h == "" || v == "" || v + 0 == 0 || h + 0 == 0) {
                printf "  %" rw[j] "s", "-"; continue
            }
            r = (better[k] == "lower") ? v / h : h / v
            fmt = (r >= 100) ? "%.0fx" : (r >= 10) ? "%.1fx" : "%.2fx"
            printf "  %" rw[j] "s", sprintf(fmt, r)
        }
        printf "\n"
    }
    if ("hermes" in sysseen)
        print "h/X: Hermes compared with X (oriented by `better`): above 1.00x Hermes is better."
}' "$1"
