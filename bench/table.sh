#!/bin/sh
# Prints a suite's TSV (scenario system value unit better) as a table a
# person can read: one row per scenario, one column per system, and the
# ratio hermes/peer for each peer (>1 means Hermes is better, whichever way
# `better` points). Usage: bench/table.sh FILE.tsv
awk -F '\t' '
NR == 1 { next }
{
    key = $1; sys = $2
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if (!(sys in sysseen)) { sysseen[sys] = 1; sysorder[++m] = sys }
    val[key, sys] = $3; unit[key] = $4; better[key] = $5
}
END {
    printf "%-28s %-10s", "scenario", "unit"
    for (j = 1; j <= m; j++) printf " %14s", sysorder[j]
    for (j = 1; j <= m; j++) if (sysorder[j] != "hermes") printf " %12s", "vs " sysorder[j]
    printf "\n"
    for (i = 1; i <= n; i++) {
        k = order[i]
        printf "%-28s %-10s", k, unit[k]
        for (j = 1; j <= m; j++) {
            v = val[k, sysorder[j]]
            if (v == "") printf " %14s", "-"; else printf " %14.4g", v
        }
        h = val[k, "hermes"]
        for (j = 1; j <= m; j++) {
            s = sysorder[j]; if (s == "hermes") continue
            v = val[k, s]
            if (h == "" || v == "" || v + 0 == 0 || h + 0 == 0) { printf " %12s", "-"; continue }
            r = (better[k] == "lower") ? v / h : h / v
            printf " %11.2fx", r
        }
        printf "\n"
    }
}' "$1"
