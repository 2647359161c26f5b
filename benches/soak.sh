#!/usr/bin/env bash
# benches/soak.sh — soak benchmark of punctual: minutes of mixed traffic while the
# upstream flaps, while the config is reloaded every second, and through kill -9
# and restart. Not part of the test suite: the default run takes about 8 minutes.
#
#   flap     SOAK_DURATION s (300) of mixed traffic at SOAK_QPS (2000) while nsd
#            answers for FLAP_PERIOD s (5) and hangs (SIGSTOP) for FLAP_PERIOD s in
#            turn -> share of queries answered within the deadline + 50 ms, latency
#            percentiles and rcodes; VmRSS, lookups and waiters in flight and cache
#            entries every second, their per-minute peaks and the least-squares slope
#            of RSS after the first minute; lookups in flight one deadline after the
#            load stops (must be 0)
#   reload   RELOAD_DURATION s (60) of mixed traffic at RELOAD_QPS (2000), healthy
#            upstream, SIGHUP every second with the config alternating between two
#            versions -> queries lost, SERVFAILs, reloads applied (log lines), and the
#            static record that changes with each reload read back
#   restart  RESTARTS (5) times, under RESTART_QPS (2000) of mixed traffic: kill -9,
#            start the same command at once, and time the first answer -> time from
#            kill and from start to the first answer, queries lost per restart
#
# Mixed traffic, per 10 queries: 5 cached names (A), 1 AAAA of a cached name (NODATA),
# 2 unique names (misses), 1 name with a TTL of 1-5 s, 1 NXDOMAIN name from a set of
# 5,000. The cache is kept small ([cache] entries = SOAK_CACHE_ENTRIES) so that it
# reaches its bound within the first minute: after that, RSS must stay flat.
#
# Run as root (it apt-get installs dnsperf, nsd and dig when missing):
#   sudo benches/soak.sh
# Knobs are environment variables (see the settings below and benches/README.md).
# Traffic only ever goes to 127.0.0.0/8 addresses.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO_DIR"

# ---------------------------------------------------------------- settings
DEFAULT_PUNCTUAL=${CARGO_TARGET_DIR:-target}/release/punctual
PUNCTUAL=${PUNCTUAL:-$DEFAULT_PUNCTUAL}       # binary; built with cargo when left at the default
BUILD=${BUILD:-1}                             # 0: never run cargo build
PHASES=${PHASES:-flap reload restart}

UPSTREAM_ADDR=${UPSTREAM_ADDR:-127.0.0.221}
UPSTREAM_PORT=${UPSTREAM_PORT:-5321}
RESOLVER_ADDR=${RESOLVER_ADDR:-127.0.0.222}
RESOLVER_PORT=${RESOLVER_PORT:-5322}
CONTROL_PORT=${CONTROL_PORT:-9156}            # punctual's control endpoint, on RESOLVER_ADDR

DEADLINE_MS=${DEADLINE_MS:-2000}              # punctual's [limits] deadline; the bar is this + 50 ms
SOAK_DURATION=${SOAK_DURATION:-300}           # flap: seconds of load
SOAK_QPS=${SOAK_QPS:-2000}                    # flap: dnsperf -Q
FLAP_PERIOD=${FLAP_PERIOD:-5}                 # flap: seconds nsd answers, then seconds it hangs
SOAK_CACHE_ENTRIES=${SOAK_CACHE_ENTRIES:-20000}
SOAK_TIMEOUT=${SOAK_TIMEOUT:-5}               # flap: dnsperf -t, longer than the deadline so late answers are seen
RELOAD_DURATION=${RELOAD_DURATION:-60}        # reload: seconds of load, one SIGHUP a second
RELOAD_QPS=${RELOAD_QPS:-2000}
RESTARTS=${RESTARTS:-5}                       # restart: kill -9 and start again this many times
RESTART_QPS=${RESTART_QPS:-2000}
RESTART_GAP=${RESTART_GAP:-5}                 # restart: seconds of load before each kill and after the last
NSD_SERVERS=${NSD_SERVERS:-1}
UPSTREAM_CPUS=${UPSTREAM_CPUS:-}              # taskset -c list for nsd; empty = no pinning
READY_TIMEOUT=${READY_TIMEOUT:-20}            # seconds to wait for a server to answer
OUT=${OUT:-}                                  # also write the report to this file
KEEP_TMP=${KEEP_TMP:-0}

# ---------------------------------------------------------------- helpers
BENCH=soak.sh
# shellcheck source=benches/common.sh
. "$SCRIPT_DIR/common.sh"

for v in UPSTREAM_ADDR RESOLVER_ADDR; do
    is_loopback "${!v}" || die "$v=${!v} is not a 127.0.0.0/8 address; this script only talks to loopback"
done
for v in UPSTREAM_PORT RESOLVER_PORT CONTROL_PORT; do is_port "${!v}" || die "$v=${!v} is not a port"; done
for v in DEADLINE_MS SOAK_DURATION SOAK_QPS FLAP_PERIOD SOAK_CACHE_ENTRIES SOAK_TIMEOUT RELOAD_DURATION \
    RELOAD_QPS RESTARTS RESTART_QPS RESTART_GAP NSD_SERVERS READY_TIMEOUT; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -eq 0 ]; then die "$v=${!v} must be a positive integer"; fi
done
[ "$RESOLVER_ADDR:$RESOLVER_PORT" != "$UPSTREAM_ADDR:$UPSTREAM_PORT" ] || die "resolver and upstream must not share an address"
[ $((SOAK_TIMEOUT * 1000)) -gt "$DEADLINE_MS" ] || die "SOAK_TIMEOUT must exceed the deadline, or late answers go unseen"
for p in $PHASES; do
    case $p in flap | reload | restart) ;; *) die "unknown phase $p (flap | reload | restart)" ;; esac
done

TMP=""
NSD_PID=""
PUNCTUAL_PID=""
DNSPERF_PID=""
FLAPPER_PID=""
HUPPER_PID=""

# resume nsd whatever the flapper left it in, then stop everything
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    restore_policy_rc
    stop_pid "$FLAPPER_PID" flapper
    stop_pid "$HUPPER_PID" "SIGHUP sender"
    nsd_signal CONT
    stop_pid "$DNSPERF_PID" dnsperf
    stop_pid "$PUNCTUAL_PID" punctual
    stop_pid "$NSD_PID" nsd
    remove_tmp
    exit "$rc"
}
trap_cleanup

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# nsd_signal STOP|CONT: hang or resume nsd and the server processes it forked
nsd_signal() {
    local p
    [ -n "$NSD_PID" ] || return 0
    for p in $(proc_tree "$NSD_PID"); do kill "-$1" "$p" 2>/dev/null || true; done
}

# ---------------------------------------------------------------- install, build, data
install_missing dnsperf:dnsperf nsd:nsd dig:bind9-dnsutils
if [ "$PUNCTUAL" = "$DEFAULT_PUNCTUAL" ] && [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    cargo build --release >&2
fi
[ -x "$PUNCTUAL" ] || die "$PUNCTUAL is not an executable (set PUNCTUAL=path)"

TMP=$(mktemp -d /tmp/punctual-soak.XXXXXX)
longest=$((SOAK_DURATION * SOAK_QPS))
for n in $((RELOAD_DURATION * RELOAD_QPS)) $(((RESTARTS + 1) * RESTART_GAP * RESTART_QPS)); do
    [ "$n" -le "$longest" ] || longest=$n
done
# a pass over the file lasts longer than any phase: unique names stay unique
lines=$((longest * 11 / 10 + 10))
log "generating the zone and $lines lines of mixed queries in $TMP"
"$SCRIPT_DIR/gen-zone.sh" "$TMP" 1000 1 500
awk -v n="$lines" 'BEGIN {
    for (i = 0; i < n; i++) {
        k = i % 10; j = int(i / 10)
        if (k < 5) printf "h%d.bench.test A\n", 1 + (j * 5 + k) % 1000
        else if (k == 5) printf "h%d.bench.test AAAA\n", 1 + j % 1000
        else if (k < 8) printf "s%d.miss.bench.test A\n", j * 2 + k - 6
        else if (k == 8) printf "n%d.ttl1to5.bench.test A\n", 1 + j % 500
        else printf "x%d.nx.bench.test A\n", 1 + j % 5000
    }
}' > "$TMP/mixed.txt"

start_nsd nsd "$UPSTREAM_ADDR" NSD_PID

# write_config FILE VALUE: the soak's punctual config; VALUE is the address of the
# static record reload.soak.test, which the reload phase alternates
write_config() {
    cat > "$1.new" <<EOF
[upstream]
servers = ["$UPSTREAM_ADDR:$UPSTREAM_PORT"]

[limits]
deadline = "${DEADLINE_MS}ms"

[cache]
entries = $SOAK_CACHE_ENTRIES

[control]
address = "$RESOLVER_ADDR:$CONTROL_PORT"

[local]
hosts_files = []

[[local.records]]
name = "reload.soak.test"
type = "A"
value = "$2"
ttl = 0
EOF
    # a reload must never read a half-written file
    mv -f "$1.new" "$1"
}

CONFIG=$TMP/punctual.toml
PUNCTUAL_LOG=$TMP/punctual.log

# start punctual in the background (log appended to PUNCTUAL_LOG); sets PUNCTUAL_PID
launch_punctual() {
    "$PUNCTUAL" run --config "$CONFIG" --listen "$RESOLVER_ADDR:$RESOLVER_PORT" --log-level info >> "$PUNCTUAL_LOG" 2>&1 &
    PUNCTUAL_PID=$!
}

start_punctual() {
    write_config "$CONFIG" 127.0.9.1
    "$PUNCTUAL" check --config "$CONFIG" >&2 || die "punctual check rejected $CONFIG"
    [ -z "$(probe "$RESOLVER_ADDR" "$RESOLVER_PORT")" ] || die "something already answers on $RESOLVER_ADDR:$RESOLVER_PORT"
    : > "$PUNCTUAL_LOG"
    launch_punctual
    wait_ready punctual "$RESOLVER_ADDR" "$RESOLVER_PORT" "$PUNCTUAL_PID" "$PUNCTUAL_LOG"
}

stop_punctual() {
    stop_pid "$PUNCTUAL_PID" punctual
    PUNCTUAL_PID=""
}

# field NAME of the running punctual's GET /stats: "lookups" and "waiters" (in
# flight) or "entries" (cache); "-" when unreadable
stats_of() {
    "$PUNCTUAL" stats --control "$RESOLVER_ADDR:$CONTROL_PORT" 2>/dev/null | tr -d ' \n' > "$TMP/stats.json" || true
    for f in "$@"; do
        sed -n "s/.*\"$f\":\\([0-9]*\\).*/\\1/p" "$TMP/stats.json" | grep . || echo -
    done
}

# dnsperf over the mixed queries, in the background: dnsperf_start OUTFILE QPS SECONDS TIMEOUT
dnsperf_start() {
    dnsperf -s "$RESOLVER_ADDR" -p "$RESOLVER_PORT" -d "$TMP/mixed.txt" -n 1 -l "$3" -Q "$2" -t "$4" \
        -c 10 -q $(($2 * ($4 + 1))) -T 2 -v > "$1" 2> "$1.err" &
    DNSPERF_PID=$!
}

dnsperf_wait() {
    if ! wait "$DNSPERF_PID"; then
        DNSPERF_PID=""
        cat "$1.err" >&2
        die "dnsperf failed"
    fi
    DNSPERF_PID=""
}

rcodes_of() { awk 'index($0, "Response codes:") { sub(/.*Response codes:[ \t]*/, ""); print; exit }' "$1"; }

declare -A R=()

# ---------------------------------------------------------------- flap
flap() {
    local out=$TMP/flap.out samples=$TMP/flap.samples t0 el stop_ms check_ms lk wt en kb bar n
    start_punctual
    log "flap: ${SOAK_DURATION}s of mixed traffic at $SOAK_QPS q/s; nsd answers ${FLAP_PERIOD}s, hangs ${FLAP_PERIOD}s, in turn"
    R[flap.rss_start]=$(vm_kb "$PUNCTUAL_PID" VmRSS)
    t0=$(now_ms)
    dnsperf_start "$out" "$SOAK_QPS" "$SOAK_DURATION" "$SOAK_TIMEOUT"
    # the flapper: answer, hang, answer... It sleeps in the background and waits,
    # so that SIGTERM (and with it the resume of nsd) takes effect at once.
    : > "$TMP/flap.events"
    (
        trap 'kill $! 2>/dev/null; nsd_signal CONT; exit 0' TERM
        while :; do
            sleep "$FLAP_PERIOD" &
            wait $!
            nsd_signal STOP
            echo "$(($(now_ms) - t0)) hang" >> "$TMP/flap.events"
            sleep "$FLAP_PERIOD" &
            wait $!
            nsd_signal CONT
            echo "$(($(now_ms) - t0)) answer" >> "$TMP/flap.events"
        done
    ) &
    FLAPPER_PID=$!
    stop_ms=$((SOAK_DURATION * 1000))
    check_ms=$((stop_ms + DEADLINE_MS + 500))
    echo "ms VmRSS_kB lookups waiters cache_entries" > "$samples"
    R[flap.inflight_at_check]=-
    while :; do
        el=$(($(now_ms) - t0))
        read -r lk wt en < <(stats_of lookups waiters entries | paste -sd' ')
        kb=$(vm_kb "$PUNCTUAL_PID" VmRSS)
        echo "$el $kb $lk $wt $en" >> "$samples"
        if [ "$el" -ge "$stop_ms" ] && [ -n "$FLAPPER_PID" ]; then
            # the load is over: the upstream answers again, as it would after an outage
            stop_pid "$FLAPPER_PID" flapper
            FLAPPER_PID=""
            nsd_signal CONT
        fi
        if [ "$el" -ge "$check_ms" ] && ! is_running "$DNSPERF_PID"; then
            R[flap.inflight_at_check]=$lk
            R[flap.check_after_ms]=$((el - stop_ms))
            break
        fi
        is_running "$PUNCTUAL_PID" || die "punctual exited during the flap phase"
        [ "$el" -lt $((stop_ms + (SOAK_TIMEOUT + 30) * 1000)) ] || die "flap: dnsperf still running long after the load"
        sleep 1
    done
    dnsperf_wait "$out"
    R[flap.rss_end]=$(vm_kb "$PUNCTUAL_PID" VmRSS)
    R[flap.rss_peak]=$(vm_kb "$PUNCTUAL_PID" VmHWM)
    R[flap.hangs]=$(grep -c hang "$TMP/flap.events" || true)
    n=$(stat_of "$out" "Queries sent")
    R[flap.sent]=$n
    R[flap.qps]=$(stat_of "$out" "Queries per second")
    R[flap.rcodes]=$(rcodes_of "$out")
    bar=$(awk -v d="$DEADLINE_MS" 'BEGIN { printf "%.3f", (d + 50) / 1000 }')
    latencies_of "$out" | sort -g > "$TMP/flap.lat"
    R[flap.within]=$(awk -v b="$bar" '$1 <= b { w++ } END { print w + 0 }' "$TMP/flap.lat")
    R[flap.answered]=$(wc -l < "$TMP/flap.lat")
    R[flap.within_pct]=$(awk -v w="${R[flap.within]}" -v n="$n" 'BEGIN { printf "%.3f", n ? 100 * w / n : 0 }')
    R[flap.max_ms]=$(tail -n 1 "$TMP/flap.lat" | awk '{ printf "%.1f", $1 * 1000 }')
    read -r _ 'R[flap.p50]' 'R[flap.p99]' 'R[flap.p999]' < <(pcts "$TMP/flap.lat")
    # per-minute peaks, and the RSS slope (least squares) after the first minute
    R[flap.minutes]=$(awk 'NR > 1 { m = int($1 / 60000); if ($2 > r[m]) r[m] = $2; if ($3 ~ /^[0-9]+$/ && $3 > l[m]) l[m] = $3
                                     if ($5 ~ /^[0-9]+$/ && $5 > e[m]) e[m] = $5; if (m > top) top = m }
        END { for (m = 0; m <= top; m++) printf "%s%d: %.1f MiB, %d lookups, %d entries", (m ? "; " : ""), m + 1, r[m] / 1024, l[m], e[m] }' "$samples")
    R[flap.slope]=$(awk -v s="$stop_ms" 'NR > 1 && $1 >= 60000 && $1 <= s { x = $1 / 60000; y = $2 / 1024; n++; sx += x; sy += y; sxx += x * x; sxy += x * y }
        END { d = n * sxx - sx * sx; if (n < 3 || d == 0) print "-"; else printf "%+.2f", (n * sxy - sx * sy) / d }' "$samples")
    R[flap.entries_end]=$(stats_of entries)
    stop_punctual
}

# ---------------------------------------------------------------- reload
reload() {
    local out=$TMP/reload.out i value seen=""
    start_punctual
    log "reload: ${RELOAD_DURATION}s of mixed traffic at $RELOAD_QPS q/s, SIGHUP every second"
    dnsperf_start "$out" "$RELOAD_QPS" "$RELOAD_DURATION" "$SOAK_TIMEOUT"
    for ((i = 1; i < RELOAD_DURATION; i++)); do
        sleep 1
        if ((i % 2)); then value=127.0.9.2; else value=127.0.9.1; fi
        write_config "$CONFIG" "$value"
        kill -HUP "$PUNCTUAL_PID"
        # read the record back a moment later: the reload took effect
        if ((i % 5 == 0)); then
            sleep 0.2
            seen+=" $value=$(dig +short +tries=1 +time=1 -p "$RESOLVER_PORT" "@$RESOLVER_ADDR" reload.soak.test A 2>/dev/null | head -n1)"
        fi
    done
    R[reload.sighups]=$((RELOAD_DURATION - 1))
    dnsperf_wait "$out"
    is_running "$PUNCTUAL_PID" || die "punctual exited during the reload phase"
    R[reload.sent]=$(stat_of "$out" "Queries sent")
    R[reload.completed]=$(stat_of "$out" "Queries completed")
    R[reload.lost]=$(stat_of "$out" "Queries lost")
    R[reload.rcodes]=$(rcodes_of "$out")
    R[reload.applied]=$(grep -c 'config reloaded' "$PUNCTUAL_LOG" || true)
    R[reload.failed]=$(grep -c 'reload failed' "$PUNCTUAL_LOG" || true)
    R[reload.readback]=${seen# }
    latencies_of "$out" > "$TMP/reload.lat"
    read -r _ 'R[reload.p50]' 'R[reload.p99]' 'R[reload.p999]' < <(pcts "$TMP/reload.lat")
    stop_punctual
}

# ---------------------------------------------------------------- restart
restart() {
    local out=$TMP/restart.out i t_kill t_start t_ans tries
    start_punctual
    log "restart: $RESTARTS x (${RESTART_GAP}s of load, kill -9, start again) at $RESTART_QPS q/s"
    dnsperf_start "$out" "$RESTART_QPS" $(((RESTARTS + 1) * RESTART_GAP)) "$SOAK_TIMEOUT"
    echo "kill_to_answer_ms start_to_answer_ms probes" > "$TMP/restart.samples"
    for ((i = 1; i <= RESTARTS; i++)); do
        sleep "$RESTART_GAP"
        t_kill=$(now_ms)
        kill -KILL "$PUNCTUAL_PID"
        wait "$PUNCTUAL_PID" 2>/dev/null || true
        t_start=$(now_ms)
        launch_punctual
        tries=0
        # one dig after another: a closed port fails at once (ICMP), so each try
        # costs about one dig start
        while :; do
            tries=$((tries + 1))
            if [ "$(probe "$RESOLVER_ADDR" "$RESOLVER_PORT")" = 127.0.0.1 ]; then break; fi
            is_running "$PUNCTUAL_PID" || die "punctual exited after restart $i"
            [ $(($(now_ms) - t_start)) -lt $((READY_TIMEOUT * 1000)) ] || die "punctual did not answer ${READY_TIMEOUT}s after restart $i"
        done
        t_ans=$(now_ms)
        echo "$((t_ans - t_kill)) $((t_ans - t_start)) $tries" >> "$TMP/restart.samples"
        log "restart $i: answering $((t_ans - t_start)) ms after the start, $((t_ans - t_kill)) ms after the kill ($tries probes)"
    done
    dnsperf_wait "$out"
    R[restart.sent]=$(stat_of "$out" "Queries sent")
    R[restart.lost]=$(stat_of "$out" "Queries lost")
    R[restart.rcodes]=$(rcodes_of "$out")
    R[restart.kill_ms]=$(awk 'NR > 1 { printf "%s%d", (NR > 2 ? " " : ""), $1 }' "$TMP/restart.samples")
    R[restart.start_ms]=$(awk 'NR > 1 { printf "%s%d", (NR > 2 ? " " : ""), $2 }' "$TMP/restart.samples")
    R[restart.max_ms]=$(awk 'NR > 1 && $1 > m { m = $1 } END { print m + 0 }' "$TMP/restart.samples")
    # how fast the prober can see an answer at all: one dig against nsd
    t_start=$(now_ms)
    probe "$UPSTREAM_ADDR" "$UPSTREAM_PORT" > /dev/null
    R[restart.probe_ms]=$(($(now_ms) - t_start))
    stop_punctual
}

for p in $PHASES; do "$p"; done

# ---------------------------------------------------------------- report
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

report() {
    echo "punctual soak, $(date -u '+%Y-%m-%d %H:%M UTC'); $("$PUNCTUAL" --version);" \
        "$(nproc) CPUs; deadline ${DEADLINE_MS} ms (bar: +50 ms); upstream nsd on $UPSTREAM_ADDR:$UPSTREAM_PORT"
    if [[ " $PHASES " == *" flap "* ]]; then
        echo
        echo "flap: ${SOAK_DURATION}s of mixed traffic at $SOAK_QPS q/s (reached ${R[flap.qps]}); nsd ${FLAP_PERIOD}s answering, ${FLAP_PERIOD}s hung, ${R[flap.hangs]} hangs"
        echo "  answered within deadline + 50 ms: ${R[flap.within]} of ${R[flap.sent]} sent (${R[flap.within_pct]}%); answered at all: ${R[flap.answered]}"
        echo "  latency p50 / p99 / p99.9 / max: ${R[flap.p50]} / ${R[flap.p99]} / ${R[flap.p999]} / ${R[flap.max_ms]} ms"
        echo "  rcodes: ${R[flap.rcodes]}"
        echo "  RSS start / end / peak: $(mib "${R[flap.rss_start]}") / $(mib "${R[flap.rss_end]}") / $(mib "${R[flap.rss_peak]}") MiB; slope after the first minute: ${R[flap.slope]} MiB/min"
        echo "  per-minute peaks (RSS, lookups in flight, cache entries): ${R[flap.minutes]}"
        echo "  lookups in flight $(awk -v m="${R[flap.check_after_ms]}" 'BEGIN { printf "%.1f", m / 1000 }')s after the load stopped: ${R[flap.inflight_at_check]}; cache entries at the end: ${R[flap.entries_end]} (bound $SOAK_CACHE_ENTRIES)"
    fi
    if [[ " $PHASES " == *" reload "* ]]; then
        echo
        echo "reload: ${RELOAD_DURATION}s of mixed traffic at $RELOAD_QPS q/s, ${R[reload.sighups]} SIGHUPs, config alternating"
        echo "  queries sent ${R[reload.sent]}, completed ${R[reload.completed]}, lost ${R[reload.lost]}"
        echo "  rcodes: ${R[reload.rcodes]}"
        echo "  reloads applied (log): ${R[reload.applied]}, failed: ${R[reload.failed]}; record read back (expected=seen): ${R[reload.readback]}"
        echo "  latency p50 / p99 / p99.9: ${R[reload.p50]} / ${R[reload.p99]} / ${R[reload.p999]} ms"
    fi
    if [[ " $PHASES " == *" restart "* ]]; then
        echo
        echo "restart: $RESTARTS x kill -9 and an immediate start, under $RESTART_QPS q/s of mixed traffic"
        echo "  first answer after the kill (ms): ${R[restart.kill_ms]}; worst ${R[restart.max_ms]} ms"
        echo "  first answer after the start (ms): ${R[restart.start_ms]}"
        echo "  one probe (dig) takes ${R[restart.probe_ms]} ms here: the resolution of these figures"
        echo "  queries sent ${R[restart.sent]}, lost ${R[restart.lost]} (sent while no process was bound, or in flight at a kill)"
        echo "  rcodes: ${R[restart.rcodes]}"
    fi
}

if [ -n "$OUT" ]; then report | tee "$OUT"; else report; fi
