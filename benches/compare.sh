#!/usr/bin/env bash
# benches/compare.sh — punctual beside unbound and dnsmasq: one table, one chart.
#
# Runs benches/load.sh (WORKLOADS="cached miss latency rss hung") for each resolver,
# REPEAT times, rotating the order each repetition so that drift on the machine hits
# every resolver alike. Each resolver listens on its own loopback address with the
# same room in its cache (CACHE_ENTRIES, enough for the 1M-entry rss run). Prints a
# Markdown table of medians (min-max) and writes it, the raw figures (TSV) and the
# latency chart (SVG) to OUT_DIR.
#
#   sudo benches/compare.sh                 # REPEAT=3, about 25 minutes
#   sudo benches/compare.sh --save          # also copy the chart to benches/latency.svg
#   OUT_DIR=DIR benches/compare.sh --report # table and chart again from DIR/raw, no runs
#   sudo DURATION=3 REPEAT=1 HUNG_DURATION=5 RSS_STEPS="10000 100000" benches/compare.sh
#
# Every other knob of load.sh (DURATION, LATENCY_QPS, HUNG_QPS, ...) passes through.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO_DIR"

REPEAT=${REPEAT:-3}
RESOLVERS=${RESOLVERS:-punctual unbound dnsmasq}
OUT_DIR=${OUT_DIR:-}
SAVE=${SAVE:-0}
REPORT_ONLY=0
BUILD=${BUILD:-1}
export RSS_STEPS=${RSS_STEPS:-100000 1000000}
export CACHE_ENTRIES=${CACHE_ENTRIES:-1100000}
export RSS_ENTRIES=${RSS_ENTRIES:-$CACHE_ENTRIES}
export LATENCY_QPS=${LATENCY_QPS:-10000}
export HUNG_DURATION=${HUNG_DURATION:-20}
export HUNG_DEADLINE_MS=${HUNG_DEADLINE_MS:-2000}
export WORKLOADS="cached miss latency rss hung"

log() { printf 'compare.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for arg in "$@"; do
    case $arg in
        --save) SAVE=1 ;;
        --report) REPORT_ONLY=1 ;;
        *) die "unknown argument $arg (--save | --report)" ;;
    esac
done
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT=$REPEAT must be a positive integer"

address_of() { # each resolver on its own loopback address
    case $1 in
        punctual) echo 127.0.0.202 ;;
        unbound) echo 127.0.0.204 ;;
        dnsmasq) echo 127.0.0.205 ;;
        *) die "unknown resolver $1 (punctual | unbound | dnsmasq)" ;;
    esac
}
for r in $RESOLVERS; do address_of "$r" > /dev/null; done
read -ra ORDER <<< "$RESOLVERS"
[ ${#ORDER[@]} -gt 0 ] || die "RESOLVERS is empty"

# the one load.sh running at a time; stopped (it cleans up after itself) on exit
CHILD=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CHILD" ]; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$REPORT_ONLY" = 1 ]; then
    if [ -z "$OUT_DIR" ] || [ ! -d "$OUT_DIR/raw" ]; then die "--report needs OUT_DIR with the raw/ of an earlier run"; fi
    BUILD=0
    # as many repetitions as the raw files hold
    REPEAT=$(find "$OUT_DIR/raw" -name '*.tsv' | sed 's/.*\.\([0-9]*\)\.tsv$/\1/' | sort -n | tail -n 1)
    [[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "no RESOLVER.REP.tsv in $OUT_DIR/raw"
fi
if [ -z "$OUT_DIR" ]; then OUT_DIR=$(mktemp -d /tmp/punctual-compare.XXXXXX); fi
mkdir -p "$OUT_DIR/raw"
log "results go to $OUT_DIR"

if [ "$BUILD" = 1 ] && [ -z "${PUNCTUAL:-}" ]; then
    log "cargo build --release"
    cargo build --release >&2
fi
if [ "$BUILD" = 1 ]; then
    # the chart program too, so that compiling it does not wait until after the runs
    cargo bench --bench chart --no-run >&2
fi
export BUILD=0

# ---------------------------------------------------------------- runs
start=$SECONDS
for ((rep = 1; rep <= REPEAT * (1 - REPORT_ONLY); rep++)); do
    # rotate: repetition 1 runs punctual unbound dnsmasq, 2 unbound dnsmasq punctual, ...
    for ((k = 0; k < ${#ORDER[@]}; k++)); do
        r=${ORDER[(k + rep - 1) % ${#ORDER[@]}]}
        log "repetition $rep of $REPEAT: $r"
        TARGET=$r RESOLVER_ADDR=$(address_of "$r") TSV="$OUT_DIR/raw/$r.$rep.tsv" OUT="$OUT_DIR/raw/$r.$rep.txt" \
            "$SCRIPT_DIR/load.sh" > /dev/null &
        CHILD=$!
        wait "$CHILD" || die "load.sh failed for $r (repetition $rep)"
        CHILD=""
    done
done
if [ "$REPORT_ONLY" = 0 ]; then log "runs took $((SECONDS - start)) s"; fi

# every figure in one file: resolver, repetition, key, value
for f in "$OUT_DIR"/raw/*.tsv; do
    b=${f##*/}
    b=${b%.tsv}
    awk -v r="${b%.*}" -v rep="${b##*.}" -F '\t' '{ print r "\t" rep "\t" $1 "\t" $2 }' "$f"
done > "$OUT_DIR/figures.tsv"

# ---------------------------------------------------------------- table
read -r step1 step2 _ <<< "$RSS_STEPS"
step2=${step2:-$step1}
human() { awk -v n="$1" 'BEGIN { if (n >= 1000000) printf "%gM", n / 1000000; else if (n >= 1000) printf "%gk", n / 1000; else print n }'; }
bar=$((HUNG_DEADLINE_MS + 50))

# rows: label, key in the TSV, format (k: counts, ms, pct, mib: kB shown in MiB, int, text)
rows() {
    cat <<EOF
cached names, q/s	cached.qps	k
cached names, answers per resolver CPU-second	cached.per_cpu	k
miss (every query upstream), q/s	miss.qps	k
miss, answers per resolver CPU-second	miss.per_cpu	k
miss, lost %	miss.lost	pct
p50 at $(human "$LATENCY_QPS") q/s cached, ms	latency.p50	ms
p99 at $(human "$LATENCY_QPS") q/s cached, ms	latency.p99	ms
p99.9 at $(human "$LATENCY_QPS") q/s cached, ms	latency.p999	ms
RSS at start, room for $(human "$RSS_ENTRIES") answers, MiB	rss.0.vmrss	mib
RSS with $(human "$step1") cached answers, MiB	rss.$step1.vmrss	mib
RSS with $(human "$step2") cached answers, MiB	rss.$step2.vmrss	mib
RSS growth per answer up to $(human "$step2"), bytes	rss.$step2.bpe	int
upstream hung: answered within $bar ms, %	hung.within_pct	pct
upstream hung: answered at all (within ${HUNG_TIMEOUT:-5} s), %	hung.answered_pct	pct
upstream hung: answer time p99, ms	hung.p99	ms
upstream hung: rcodes (first repetition)	hung.rcodes	text
upstream hung: RSS before, MiB	hung.rss_before	mib
upstream hung: RSS peak, MiB	hung.rss_peak	mib
upstream hung: RSS after, MiB	hung.rss_after	mib
upstream hung: lookups in flight one deadline after the load stopped	hung.inflight_at_deadline	int
EOF
}

# medians with min-max: a cell per (row, resolver); "inf" sorts last, "-" and missing are left out
table() {
    local header="| |" rule="|---|" r
    for r in "${ORDER[@]}"; do header+=" $r |" rule+="---|"; done
    echo "$header"
    echo "$rule"
    rows | awk -F '\t' -v resolvers="${ORDER[*]}" -v timeout="${HUNG_TIMEOUT:-5}" '
        FNR == NR { v[$1 SUBSEP $3] = v[$1 SUBSEP $3] (v[$1 SUBSEP $3] == "" ? "" : "\t") $4
                    if ($2 == 1 && !(($1 SUBSEP $3) in first)) first[$1 SUBSEP $3] = $4
                    next }
        function num(x, fmt) {
            if (x == "inf") return "none"
            if (fmt == "mib") return sprintf("%.0f", x / 1024)
            if (fmt == "pct") return sprintf("%.1f", x)
            if (fmt == "int") return sprintf("%.0f", x)
            if (fmt == "ms") return x >= 100 ? sprintf("%.0f", x) : (x >= 1 ? sprintf("%.2f", x) : sprintf("%.3f", x))
            if (x >= 100000) return sprintf("%.0fk", x / 1000)
            if (x >= 1000) return sprintf("%.1fk", x / 1000)
            return sprintf("%.0f", x)
        }
        function key(x) { return x == "inf" ? 1e300 : x + 0 }
        function cell(s, fmt,   a, n, m, i, j, t, med) {
            n = 0
            m = split(s, a, "\t")
            for (i = 1; i <= m; i++) if (a[i] != "-" && a[i] != "" && a[i] != "never") b[++n] = a[i]
            if (n == 0) return "n/a"
            for (i = 2; i <= n; i++) for (j = i; j > 1 && key(b[j - 1]) > key(b[j]); j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
            if (n % 2) med = num(b[(n + 1) / 2], fmt)
            else if (b[n / 2] == "inf" || b[n / 2 + 1] == "inf") med = num(b[n / 2 + 1], fmt)
            else med = num((b[n / 2] + b[n / 2 + 1]) / 2, fmt)
            if (num(b[1], fmt) == num(b[n], fmt)) return med
            return med " (" num(b[1], fmt) "–" num(b[n], fmt) ")"
        }
        {
            line = "| " $1 " |"
            nr = split(resolvers, rs, " ")
            for (k = 1; k <= nr; k++) {
                if ($3 == "text") {
                    t = first[rs[k] SUBSEP $2]
                    gsub(/ [0-9]+ \(/, " ", t); gsub(/\.00%\)/, "%", t); gsub(/\)/, "", t)
                    line = line " " (t == "" ? "none" : t) " |"
                } else line = line " " cell(v[rs[k] SUBSEP $2], $3) " |"
            }
            print line
        }' "$OUT_DIR/figures.tsv" -
}

{
    echo "punctual, unbound and dnsmasq on $(nproc) CPUs; $REPEAT repetition(s), median (min–max); ${DURATION:-10} s per workload"
    echo
    table
    echo
    echo "- cached/miss: dnsperf -c ${CLIENTS:-10} -q ${OUTSTANDING:-100} at full speed; CPU = user + system of the resolver's processes."
    echo "- latency: per-query latencies from dnsperf -v at a fixed $(human "$LATENCY_QPS") q/s over ${CACHED_NAMES:-1000} cached names."
    echo "- rss: a fresh resolver with room for $(human "$RSS_ENTRIES") answers, filled with unique names; growth = (RSS - RSS at start) / answers."
    echo "- upstream hung: nsd stopped (SIGSTOP) while a fresh resolver gets ${HUNG_QPS:-2000} q/s of new names for ${HUNG_DURATION} s;"
    echo "  answer time p99 counts unanswered queries as infinite (\"none\": fewer than 99 % answered within ${HUNG_TIMEOUT:-5} s)."
    echo "- Settings: punctual's defaults with [cache] entries = $CACHE_ENTRIES (tokio: one worker per CPU); unbound num-threads ${UNBOUND_THREADS:-$(nproc)},"
    echo "  msg and rrset caches of 1 KiB per answer, no validator; dnsmasq --cache-size=$CACHE_ENTRIES (single-threaded, dns-forward-max 150 as shipped)."
    echo "- Versions and the full reports: raw/*.txt in $OUT_DIR."
} > "$OUT_DIR/table.md"

# ---------------------------------------------------------------- chart
{
    printf 'resolver\tpercentile\tmedian\tmin\tmax\n'
    for r in "${ORDER[@]}"; do
        for p in p50 p99 p999; do
            awk -F '\t' -v r="$r" -v k="latency.$p" '$1 == r && $3 == k && $4 + 0 > 0 { print $4 }' "$OUT_DIR/figures.tsv" |
                sort -g | awk -v r="$r" -v p="$p" '{ v[NR] = $1 }
                    END { if (NR == 0) exit
                          m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                          sub(/p999/, "p99.9", p)
                          printf "%s\t%s\t%s\t%s\t%s\n", r, p, m, v[1], v[NR] }'
        done
    done
} > "$OUT_DIR/latency.tsv"
title="Answer latency, cached names at $(human "$LATENCY_QPS") q/s (median of $REPEAT, whiskers min–max)"
if cargo bench --bench chart -- "$OUT_DIR/latency.tsv" "$OUT_DIR/latency.svg" "$title" > "$OUT_DIR/chart.log" 2>&1; then
    log "chart: $OUT_DIR/latency.svg"
    if [ "$SAVE" = 1 ]; then
        cp "$OUT_DIR/latency.svg" "$SCRIPT_DIR/latency.svg"
        log "copied to benches/latency.svg"
    fi
else
    tail -n 5 "$OUT_DIR/chart.log" >&2
    log "warning: no chart (see $OUT_DIR/chart.log)"
fi

cat "$OUT_DIR/table.md"
log "table: $OUT_DIR/table.md; raw figures: $OUT_DIR/figures.tsv (resolver, repetition, key, value) and raw/"
