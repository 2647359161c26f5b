#!/usr/bin/env bash
# benches/load.sh — load benchmark of punctual (or a stand-in resolver).
#
# Starts an authoritative upstream (nsd) serving `bench.test.` on loopback,
# starts the resolver under test forwarding to it, and drives it with dnsperf:
#
#   cached   cached names at full speed   -> q/s, lost %, resolver CPU, answers/CPU-s
#   miss     unique names at full speed   -> same (every query goes upstream)
#   latency  cached names at a fixed rate -> p50 / p99 / p99.9 from per-query latencies
#   flood    the latency workload twice: alone ("quiet"), then while one client
#            (benches/flood.rs) sends malformed packets at full speed ("flooded")
#            -> the p99 and p99.9 the flood adds; not in the default set
#
# Two more start a punctual of their own per run (small [cache] config, log level
# info) and read its counters line at shutdown; not in the default set:
#
#   shortttl names with TTLs of 1-5 s and of 10-15 s at a fixed rate, prefetch on
#            and off, serve_stale off -> share of queries that waited on the upstream
#   rss      fill the cache with 100k, then 1M unique names -> VmRSS, bytes per entry
#   hedge    two upstream nsd, unique names at a fixed rate; at a third of the run the
#            preferred upstream hangs (SIGSTOP) -> p50 / p99 / p99.9 and lost %, whole
#            run and after the hang
#
# Two start a fresh resolver of their own, for TARGET=punctual, unbound or dnsmasq:
#
#   rss      fill the cache with 100k, then 1M unique names -> VmRSS, bytes per entry
#            (punctual: also its own accounting, from the counters line)
#   hung     the upstream hangs (SIGSTOP) while unique names come at a fixed rate ->
#            share answered within the deadline + 50 ms, answer p99, RSS, and
#            punctual's lookups in flight after the load stops
#
# benches/compare.sh runs this script for punctual, unbound and dnsmasq in turn and
# prints one table.
#
# Run as root (it apt-get installs dnsperf, nsd and dig when missing):
#   sudo benches/load.sh
# Every knob is an environment variable; see benches/README.md.
# Traffic only ever goes to 127.0.0.0/8 addresses; the script refuses others.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO_DIR"

# ---------------------------------------------------------------- settings
TARGET=${TARGET:-punctual}                    # punctual | unbound | dnsmasq | nsd | external
DEFAULT_PUNCTUAL=${CARGO_TARGET_DIR:-target}/release/punctual
PUNCTUAL=${PUNCTUAL:-$DEFAULT_PUNCTUAL}       # binary; built with cargo when left at the default
PUNCTUAL_CONFIG=${PUNCTUAL_CONFIG:-conf/punctual.toml}
PUNCTUAL_LOG_LEVEL=${PUNCTUAL_LOG_LEVEL:-warn}
PUNCTUAL_ARGS=${PUNCTUAL_ARGS:-}              # extra arguments, word-split
BUILD=${BUILD:-1}                             # 0: never run cargo build

UPSTREAM_ADDR=${UPSTREAM_ADDR:-127.0.0.201}
UPSTREAM_PORT=${UPSTREAM_PORT:-5301}
RESOLVER_ADDR=${RESOLVER_ADDR:-127.0.0.202}
RESOLVER_PORT=${RESOLVER_PORT:-5302}
RESOLVER_PID=${RESOLVER_PID:-}                # TARGET=external: pid to read CPU time from (optional)

DURATION=${DURATION:-10}                      # dnsperf -l, seconds, per workload
CLIENTS=${CLIENTS:-10}                        # dnsperf -c
OUTSTANDING=${OUTSTANDING:-100}               # dnsperf -q
THREADS=${THREADS:-1}                         # dnsperf -T
TIMEOUT=${TIMEOUT:-2}                         # dnsperf -t, seconds before a query counts as lost
LATENCY_QPS=${LATENCY_QPS:-10000}             # dnsperf -Q for the latency workload
CACHED_NAMES=${CACHED_NAMES:-1000}
MISS_NAMES=${MISS_NAMES:-2000000}
WORKLOADS=${WORKLOADS:-cached miss latency}   # also: flood shortttl rss hedge hung
FLOOD_FROM=${FLOOD_FROM:-127.0.0.206}         # flood: the flooder's address
FLOOD_MAX=${FLOOD_MAX:-100000000}             # flood: packets at most (it stops after DURATION + 2 s anyway)
SHORT_NAMES=${SHORT_NAMES:-500}               # shortttl: names per TTL set
SHORT_QPS=${SHORT_QPS:-2000}                  # shortttl: dnsperf -Q
SHORT_DURATION=${SHORT_DURATION:-60}          # shortttl: dnsperf -l of each of its 4 runs
RSS_STEPS=${RSS_STEPS:-100000 1000000}        # rss: cache fills (unique names) at which VmRSS is read
RSS_ENTRIES=${RSS_ENTRIES:-1100000}           # rss: [cache] entries
RSS_MAX_BYTES=${RSS_MAX_BYTES:-2GiB}          # rss: [cache] max_bytes
RSS_TIME_LIMIT=${RSS_TIME_LIMIT:-600}         # rss: dnsperf -l cap of each fill step
INSTANCE_PORT=${INSTANCE_PORT:-5303}          # shortttl, rss, hedge: their punctual listens on RESOLVER_ADDR:INSTANCE_PORT
UPSTREAM2_ADDR=${UPSTREAM2_ADDR:-127.0.0.203} # hedge: second nsd, on UPSTREAM2_ADDR:UPSTREAM_PORT
HEDGE_QPS=${HEDGE_QPS:-2000}                  # hedge: dnsperf -Q
HEDGE_OUTSTANDING=${HEDGE_OUTSTANDING:-500}   # hedge: dnsperf -q (room for queries held up by the hang)
HUNG_QPS=${HUNG_QPS:-2000}                    # hung: dnsperf -Q
HUNG_DURATION=${HUNG_DURATION:-20}            # hung: dnsperf -l
HUNG_TIMEOUT=${HUNG_TIMEOUT:-5}               # hung: dnsperf -t (longer than the deadline: late answers count)
HUNG_DEADLINE_MS=${HUNG_DEADLINE_MS:-2000}    # hung: punctual's deadline (the shipped 2s); the bar is this + 50 ms
HUNG_OUTSTANDING=${HUNG_OUTSTANDING:-$((HUNG_QPS * (HUNG_TIMEOUT + 1)))} # hung: dnsperf -q, room for every query held up
HUNG_THREADS=${HUNG_THREADS:-2}               # hung: dnsperf -T (one thread falls short of -Q with thousands outstanding)
CACHE_ENTRIES=${CACHE_ENTRIES:-}              # cache size of the resolver under test; empty: each one's default
CONTROL_PORT=${CONTROL_PORT:-9153}            # punctual's control endpoint, on RESOLVER_ADDR
INSTANCE_CONTROL_PORT=${INSTANCE_CONTROL_PORT:-9154} # the same for the punctual of shortttl, rss, hedge, hung
TSV=${TSV:-}                                  # also write every figure as KEY<TAB>VALUE to this file
NSD_SERVERS=${NSD_SERVERS:-1}                 # nsd server-count
UNBOUND_THREADS=${UNBOUND_THREADS:-$(nproc)}
RESOLVER_CPUS=${RESOLVER_CPUS:-}              # taskset -c lists; empty = no pinning
UPSTREAM_CPUS=${UPSTREAM_CPUS:-}
LOADGEN_CPUS=${LOADGEN_CPUS:-}
READY_TIMEOUT=${READY_TIMEOUT:-20}            # seconds to wait for a server to answer
OUT=${OUT:-}                                  # also write the report to this file
KEEP_TMP=${KEEP_TMP:-0}

# ---------------------------------------------------------------- helpers
BENCH=load.sh
# shellcheck source=benches/common.sh
. "$SCRIPT_DIR/common.sh"
for v in UPSTREAM_ADDR RESOLVER_ADDR UPSTREAM2_ADDR FLOOD_FROM; do
    is_loopback "${!v}" || die "$v=${!v} is not a 127.0.0.0/8 address; this script only talks to loopback"
done
for v in UPSTREAM_PORT RESOLVER_PORT INSTANCE_PORT CONTROL_PORT INSTANCE_CONTROL_PORT; do is_port "${!v}" || die "$v=${!v} is not a port"; done
for v in DURATION CLIENTS OUTSTANDING THREADS TIMEOUT LATENCY_QPS CACHED_NAMES MISS_NAMES NSD_SERVERS \
    SHORT_NAMES SHORT_QPS SHORT_DURATION RSS_ENTRIES RSS_TIME_LIMIT HEDGE_QPS HEDGE_OUTSTANDING \
    HUNG_QPS HUNG_DURATION HUNG_TIMEOUT HUNG_DEADLINE_MS HUNG_OUTSTANDING HUNG_THREADS FLOOD_MAX ${CACHE_ENTRIES:+CACHE_ENTRIES}; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -eq 0 ]; then die "$v=${!v} must be a positive integer"; fi
done
case $TARGET in
    punctual | unbound | dnsmasq | external) ;;
    nsd) RESOLVER_ADDR=$UPSTREAM_ADDR RESOLVER_PORT=$UPSTREAM_PORT ;;
    *) die "unknown TARGET=$TARGET (punctual | unbound | dnsmasq | nsd | external)" ;;
esac
if [ "$TARGET" != nsd ] && [ "$RESOLVER_ADDR:$RESOLVER_PORT" = "$UPSTREAM_ADDR:$UPSTREAM_PORT" ]; then
    die "resolver and upstream must not share $RESOLVER_ADDR:$RESOLVER_PORT"
fi
CLASSIC=""                                    # workloads run against the resolver under test
OWN=""                                        # workloads that start a punctual of their own
for w in $WORKLOADS; do
    case $w in
        cached | miss | latency | flood) CLASSIC+=" $w" ;;
        shortttl | rss | hedge | hung) OWN+=" $w" ;;
        *) die "unknown workload $w (cached | miss | latency | flood | shortttl | rss | hedge | hung)" ;;
    esac
done
HEDGE=0
if [[ " $OWN " == *" hedge "* ]]; then
    HEDGE=1
    for a in "$RESOLVER_ADDR:$RESOLVER_PORT" "$UPSTREAM_ADDR:$UPSTREAM_PORT" "$RESOLVER_ADDR:$INSTANCE_PORT"; do
        [ "$UPSTREAM2_ADDR:$UPSTREAM_PORT" != "$a" ] || die "UPSTREAM2_ADDR=$UPSTREAM2_ADDR: $a is taken"
    done
fi
if [ -n "$OWN" ]; then
    for w in $OWN; do
        case $w:$TARGET in
            rss:punctual | rss:unbound | rss:dnsmasq | hung:punctual | hung:unbound | hung:dnsmasq) ;;
            rss:* | hung:*) die "workload $w starts the resolver itself: it needs TARGET=punctual, unbound or dnsmasq" ;;
            *:punctual) ;;
            *) die "workload $w starts punctual itself: it needs TARGET=punctual" ;;
        esac
    done
    for a in "$RESOLVER_ADDR:$RESOLVER_PORT" "$UPSTREAM_ADDR:$UPSTREAM_PORT"; do
        [ "$RESOLVER_ADDR:$INSTANCE_PORT" != "$a" ] || die "INSTANCE_PORT=$INSTANCE_PORT: $a is taken"
    done
    [ "$SHORT_NAMES" -le 65535 ] || die "SHORT_NAMES=$SHORT_NAMES must be at most 65535"
    prev=0
    for n in $RSS_STEPS; do
        if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -le "$prev" ]; then
            die "RSS_STEPS=\"$RSS_STEPS\" must be increasing positive integers"
        fi
        prev=$n
    done
    [ "$prev" -gt 0 ] || die "RSS_STEPS is empty"
    [ "$prev" -lt "$RSS_ENTRIES" ] || die "RSS_ENTRIES=$RSS_ENTRIES must exceed the last of RSS_STEPS ($prev): no entry may be evicted"
    # it goes into a TOML string; punctual checks the unit
    [[ $RSS_MAX_BYTES =~ ^[0-9]+[A-Za-z]*$ ]] || die "RSS_MAX_BYTES=$RSS_MAX_BYTES is not a size such as 2GiB"
fi

TMP=""
NSD_PID=""
NSD2_PID=""                                   # hedge: the second upstream nsd
SERVER_PID=""                                 # resolver process this script started
INSTANCE_PID=""                               # resolver started by shortttl, rss, hedge or hung (one at a time)
DNSPERF_PID=""
FLOOD_PID=""                                  # flood: the flooder
ROWS=""                                       # rows of the report's table, in the order run

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    restore_policy_rc
    resume_stopped
    stop_pid "$DNSPERF_PID" dnsperf
    stop_pid "$FLOOD_PID" flooder
    stop_pid "$INSTANCE_PID" "$TARGET (instance)"
    stop_pid "$SERVER_PID" "$TARGET"
    stop_pid "$NSD_PID" nsd
    stop_pid "$NSD2_PID" "nsd (second upstream)"
    remove_tmp
    exit "$rc"
}

trap_cleanup

# ---------------------------------------------------------------- install

tools=(dnsperf:dnsperf nsd:nsd dig:bind9-dnsutils taskset:util-linux)
case $TARGET in
    unbound) tools+=(unbound:unbound) ;;
    dnsmasq) tools+=(dnsmasq:dnsmasq-base) ;;
esac
install_missing "${tools[@]}"
NSD_BIN=$(bin nsd)

# ---------------------------------------------------------------- punctual build
if [ "$TARGET" = punctual ]; then
    if [ "$PUNCTUAL" = "$DEFAULT_PUNCTUAL" ] && [ "$BUILD" = 1 ]; then
        log "cargo build --release"
        cargo build --release >&2
    fi
    [ -x "$PUNCTUAL" ] || die "$PUNCTUAL is not an executable (set PUNCTUAL=path)"
fi
FLOODER=""
if [[ " $CLASSIC " == *" flood "* ]]; then
    # cargo names the bench executable it built: "Executable benches/flood.rs (PATH)"
    FLOODER=$(cargo bench --bench flood --no-run 2>&1 | sed -n 's/.*Executable benches\/flood.rs (\(.*\))/\1/p' | tail -n 1)
    [ -x "$FLOODER" ] || die "cargo bench --bench flood --no-run did not name an executable"
fi

# ---------------------------------------------------------------- data and upstream
TMP=$(mktemp -d /tmp/punctual-load.XXXXXX)
log "generating zone and query files in $TMP ($CACHED_NAMES cached names, $MISS_NAMES miss names, 2 x $SHORT_NAMES short-TTL names)"
"$SCRIPT_DIR/gen-zone.sh" "$TMP" "$CACHED_NAMES" "$MISS_NAMES" "$SHORT_NAMES"

start_nsd nsd "$UPSTREAM_ADDR" NSD_PID
if [ "$HEDGE" = 1 ]; then start_nsd nsd2 "$UPSTREAM2_ADDR" NSD2_PID; fi

# launch_other PORT NAME ENTRIES: start TARGET (unbound or dnsmasq) on
# RESOLVER_ADDR:PORT forwarding everything to nsd, files $TMP/NAME.*, with room for
# ENTRIES cached answers (empty: unbound's default, dnsmasq 10000); sets LAUNCHED_PID
launch_other() {
    local port=$1 name=$2 entries=$3 cache=""
    case $TARGET in
        unbound)
            # limits, not allocations: about 1 KiB per answer in each cache is ample
            if [ -n "$entries" ]; then
                cache="msg-cache-size: $((entries * 1024))
    rrset-cache-size: $((entries * 1024))"
            fi
            cat > "$TMP/$name.unbound.conf" <<EOF
server:
    interface: $RESOLVER_ADDR@$port
    port: $port
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$TMP"
    pidfile: "$TMP/$name.unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: $UNBOUND_THREADS
    so-reuseport: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    # no validator: the test zone is unsigned
    module-config: "iterator"
    qname-minimisation: no
    local-zone: "test." nodefault
    domain-insecure: "test."
    $cache
remote-control:
    control-enable: no
# everything, the root included, goes to the loopback upstream: nothing else is ever contacted
forward-zone:
    name: "."
    forward-addr: $UPSTREAM_ADDR@$UPSTREAM_PORT
EOF
            "$(bin unbound-checkconf)" "$TMP/$name.unbound.conf" >&2 || die "unbound-checkconf rejected $TMP/$name.unbound.conf"
            launch "$RESOLVER_CPUS" "$TMP/$name.log" "$(bin unbound)" -d -c "$TMP/$name.unbound.conf"
            ;;
        dnsmasq)
            # dnsmasq 2.90 takes any size (it warns above 10000); it logs the size it uses
            launch "$RESOLVER_CPUS" "$TMP/$name.log" "$(bin dnsmasq)" -k -C /dev/null --no-resolv --no-hosts \
                --server="$UPSTREAM_ADDR#$UPSTREAM_PORT" --listen-address="$RESOLVER_ADDR" --port="$port" \
                --bind-interfaces --cache-size="${entries:-10000}" --pid-file="$TMP/$name.dnsmasq.pid" --user=root --log-facility=-
            ;;
        *) die "launch_other: TARGET=$TARGET" ;;
    esac
}

# ---------------------------------------------------------------- resolver
# shortttl and rss start their own punctual: without cached, miss or latency
# nothing else is started
if [ -n "$CLASSIC" ]; then
    if [ "$TARGET" != nsd ] && [ "$TARGET" != external ]; then
        [ -z "$(probe "$RESOLVER_ADDR" "$RESOLVER_PORT")" ] || die "something already answers on $RESOLVER_ADDR:$RESOLVER_PORT"
    fi
    case $TARGET in
        punctual)
            args=(run)
            if [ -n "$CACHE_ENTRIES" ]; then
                # the same room as the rss workload's punctual, every other key at its default
                printf '[cache]\nentries = %s\nmax_bytes = "%s"\n' "$CACHE_ENTRIES" "$RSS_MAX_BYTES" > "$TMP/resolver.toml"
                args+=(--config "$TMP/resolver.toml")
            elif [ -f "$PUNCTUAL_CONFIG" ]; then
                args+=(--config "$PUNCTUAL_CONFIG")
            else
                log "warning: $PUNCTUAL_CONFIG not found; starting punctual without --config"
            fi
            args+=(--listen "$RESOLVER_ADDR:$RESOLVER_PORT" --upstream "$UPSTREAM_ADDR:$UPSTREAM_PORT"
                --control "$RESOLVER_ADDR:$CONTROL_PORT" --log-level "$PUNCTUAL_LOG_LEVEL")
            # shellcheck disable=SC2206
            args+=($PUNCTUAL_ARGS)
            log "starting $PUNCTUAL ${args[*]}"
            launch "$RESOLVER_CPUS" "$TMP/resolver.log" "$PUNCTUAL" "${args[@]}"
            SERVER_PID=$LAUNCHED_PID
            ;;
        unbound | dnsmasq)
            launch_other "$RESOLVER_PORT" resolver "$CACHE_ENTRIES"
            SERVER_PID=$LAUNCHED_PID
            ;;
        nsd) RESOLVER_PID=$NSD_PID ;;
        external) ;;
    esac
    if [ -n "$SERVER_PID" ]; then RESOLVER_PID=$SERVER_PID; fi
    wait_ready "$TARGET" "$RESOLVER_ADDR" "$RESOLVER_PORT" "$RESOLVER_PID" "$TMP/resolver.log"
    if [ "$TARGET" = punctual ]; then
        grep -m1 'listening on udp://' "$TMP/resolver.log" >&2 || true
    fi
fi

# ---------------------------------------------------------------- workloads
LOADGEN=()
if [ -n "$LOADGEN_CPUS" ]; then LOADGEN=(taskset -c "$LOADGEN_CPUS"); fi

# where dnsperf_run sends: the resolver under test, or the punctual that a
# shortttl or rss run started (instance_start / instance_stop switch these)
PERF_PORT=$RESOLVER_PORT
PERF_PID=$RESOLVER_PID
PERF_NAME=$TARGET
PERF_LOG=$TMP/resolver.log

# dnsperf_run OUTFILE ARGS...: run dnsperf against the resolver, capture
# resolver and upstream CPU ticks around it into OUTFILE.cpu
dnsperf_run() {
    local out=$1 r0 r1 u0 u1
    shift
    r0=$(cpu_ticks "$PERF_PID")
    u0=$(cpu_ticks "$NSD_PID")
    # in the background so that a signal to this script interrupts the wait
    "${LOADGEN[@]}" dnsperf -s "$RESOLVER_ADDR" -p "$PERF_PORT" -t "$TIMEOUT" "$@" > "$out" 2> "$out.err" &
    DNSPERF_PID=$!
    if ! wait "$DNSPERF_PID"; then
        DNSPERF_PID=""
        cat "$out.err" >&2
        die "dnsperf failed ($*)"
    fi
    DNSPERF_PID=""
    r1=$(cpu_ticks "$PERF_PID")
    u1=$(cpu_ticks "$NSD_PID")
    echo "$((r1 - r0)) $((u1 - u0))" > "$out.cpu"
    if [ -n "$PERF_PID" ] && ! is_running "$PERF_PID"; then
        [ -f "$PERF_LOG" ] && tail -n 20 "$PERF_LOG" >&2
        die "$PERF_NAME exited during the run"
    fi
}


warm() {
    log "warming the cache with one pass over $CACHED_NAMES names"
    dnsperf_run "$TMP/warm.txt" -d "$TMP/cached.txt" -n 1 -c 1 -q 20
    local answered
    answered=$(stat_of "$TMP/warm.txt" "Queries completed")
    if [ "$answered" != "$CACHED_NAMES" ]; then
        log "warning: warm-up answered $answered of $CACHED_NAMES"
    fi
}

declare -A R=() # R[workload.field]

record() { # record WORKLOAD FILE
    local w=$1 file=$2 cpu up completed
    read -r cpu up < "$file.cpu"
    completed=$(stat_of "$file" "Queries completed")
    R[$w.qps]=$(stat_of "$file" "Queries per second")
    R[$w.sent]=$(stat_of "$file" "Queries sent")
    R[$w.completed]=$completed
    R[$w.lost]=$(awk 'index($0, "Queries lost:") { gsub(/[()%]/, "", $4); print $4; exit }' "$file")
    R[$w.runtime]=$(stat_of "$file" "Run time (s)")
    R[$w.rcodes]=$(awk 'index($0, "Response codes:") { sub(/.*Response codes:[ \t]*/, ""); print; exit }' "$file")
    R[$w.upcpu]=$(ticks_to_s "$up")
    if [ -n "$PERF_PID" ]; then
        R[$w.cpu]=$(ticks_to_s "$cpu")
        R[$w.per_cpu]=$(awk -v n="$completed" -v t="$cpu" -v hz="$CLK_TCK" \
            'BEGIN { if (t > 0) printf "%.0f", n * hz / t; else print "-" }')
    else
        R[$w.cpu]=-
        R[$w.per_cpu]=-
    fi
    log "$w: ${R[$w.qps]} q/s, lost ${R[$w.lost]}%, resolver CPU ${R[$w.cpu]} s"
}

# instance_start NAME CONFIG [UPSTREAM]: start a fresh resolver on
# RESOLVER_ADDR:INSTANCE_PORT; dnsperf_run sends to it until instance_stop.
# punctual: with a config file of its own holding CONFIG (every other key at its
# default), --upstream UPSTREAM unless that is "-" (default
# UPSTREAM_ADDR:UPSTREAM_PORT), its control endpoint on
# RESOLVER_ADDR:INSTANCE_CONTROL_PORT, log level info (and RUST_LOG unset) for the
# final counters line. unbound, dnsmasq: launch_other with room for RSS_ENTRIES
# answers; CONFIG and UPSTREAM are not used.
instance_start() {
    local name=$1 cfg="$TMP/$1.toml" logf="$TMP/$1.log" up=${3:-$UPSTREAM_ADDR:$UPSTREAM_PORT}
    local -a args
    [ -z "$(probe "$RESOLVER_ADDR" "$INSTANCE_PORT")" ] || die "something already answers on $RESOLVER_ADDR:$INSTANCE_PORT"
    if [ "$TARGET" = punctual ]; then
        printf '%s\n' "$2" > "$cfg"
        args=(run --config "$cfg" --listen "$RESOLVER_ADDR:$INSTANCE_PORT" --control "$RESOLVER_ADDR:$INSTANCE_CONTROL_PORT")
        if [ "$up" != - ]; then args+=(--upstream "$up"); fi
        args+=(--log-level info)
        # shellcheck disable=SC2206
        args+=($PUNCTUAL_ARGS)
        log "$name: starting $PUNCTUAL ${args[*]} with config: $(paste -sd' ' <<< "$2")"
        launch "$RESOLVER_CPUS" "$logf" env -u RUST_LOG "$PUNCTUAL" "${args[@]}"
    else
        log "$name: starting $TARGET on $RESOLVER_ADDR:$INSTANCE_PORT with room for $RSS_ENTRIES answers"
        launch_other "$INSTANCE_PORT" "$name" "$RSS_ENTRIES"
    fi
    INSTANCE_PID=$LAUNCHED_PID
    wait_ready "$name" "$RESOLVER_ADDR" "$INSTANCE_PORT" "$INSTANCE_PID" "$logf"
    PERF_PORT=$INSTANCE_PORT PERF_PID=$INSTANCE_PID PERF_NAME="$TARGET ($name)" PERF_LOG=$logf
}

# instance_stop NAME: SIGTERM the instance; punctual: then copy its final counters
# line into R[NAME.COUNTER] (NAME.cache_misses, NAME.cache_bytes, ...)
instance_stop() {
    local name=$1 logf="$TMP/$1.log" line kv
    stop_pid "$INSTANCE_PID" "$TARGET ($name)"
    INSTANCE_PID=""
    PERF_PORT=$RESOLVER_PORT PERF_PID=$RESOLVER_PID PERF_NAME=$TARGET PERF_LOG=$TMP/resolver.log
    [ "$TARGET" = punctual ] || return 0
    line=$(grep -m1 ' final counters ' "$logf" || true)
    if [ -z "$line" ]; then
        tail -n 20 "$logf" >&2
        die "$name: punctual logged no final counters line"
    fi
    for kv in ${line#* final counters }; do
        if [[ $kv =~ ^([a-z_]+)=([0-9]+)$ ]]; then R[$name.${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}; fi
    done
    for kv in queries_udp queries_tcp cache_misses cache_entries cache_bytes; do
        [ -n "${R[$name.$kv]:-}" ] || die "$name: no $kv in the final counters line"
    done
}

# shortttl SET PREFETCH: SHORT_DURATION s of SET's names at SHORT_QPS q/s against
# a fresh punctual with serve_stale off (an expired entry waits on the upstream)
shortttl() {
    local set=$1 pf=$2 n="shortttl.$1.$2"
    instance_start "$n" "[cache]
prefetch = $pf
serve_stale = false"
    log "$n: ${SHORT_DURATION}s over $SHORT_NAMES names ($set) at $SHORT_QPS q/s"
    dnsperf_run "$TMP/$n.out" -d "$TMP/$set.txt" -l "$SHORT_DURATION" -Q "$SHORT_QPS" \
        -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS"
    record "$n" "$TMP/$n.out"
    instance_stop "$n"
    log "$n: ${R[$n.cache_misses]} misses of $((${R[$n.queries_udp]} + ${R[$n.queries_tcp]})) queries, ${R[$n.prefetches]:-?} prefetches"
}

# rss: fill a fresh resolver's cache with unique names in RSS_STEPS, reading
# VmRSS before and after each step
rss() {
    local step prev=0 done_=0
    instance_start rss "[cache]
entries = $RSS_ENTRIES
max_bytes = \"$RSS_MAX_BYTES\""
    R[rss.0.vmrss]=$(vm_kb "$INSTANCE_PID" VmRSS)
    R[rss.0.vmhwm]=$(vm_kb "$INSTANCE_PID" VmHWM)
    R[rss.0.entries]=1 # the readiness probe's answer
    for step in $RSS_STEPS; do
        awk -v a=$((prev + 1)) -v b="$step" 'BEGIN { for (i = a; i <= b; i++) printf "r%d.miss.bench.test A\n", i }' \
            > "$TMP/rss.$step.txt"
        log "rss: filling the cache with names $((prev + 1))..$step (-n 1 -c $CLIENTS -q $OUTSTANDING -T $THREADS)"
        dnsperf_run "$TMP/rss.$step.out" -d "$TMP/rss.$step.txt" -n 1 -l "$RSS_TIME_LIMIT" \
            -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS"
        record "rss.$step" "$TMP/rss.$step.out"
        if [ "${R[rss.$step.sent]}" -lt $((step - prev)) ]; then
            log "warning: rss sent ${R[rss.$step.sent]} of $((step - prev)) names within ${RSS_TIME_LIMIT}s"
        fi
        # lookups of queries that dnsperf gave up on still fill the cache: let them
        # end (they stop at the deadline, 2 s by default) before reading VmRSS
        sleep 3
        done_=$((done_ + ${R[rss.$step.completed]}))
        R[rss.$step.entries]=$((1 + done_))
        R[rss.$step.vmrss]=$(vm_kb "$INSTANCE_PID" VmRSS)
        R[rss.$step.vmhwm]=$(vm_kb "$INSTANCE_PID" VmHWM)
        # what each answer cached so far costs, start-up memory left out
        R[rss.$step.bpe]=$(awk -v r1="${R[rss.$step.vmrss]}" -v r0="${R[rss.0.vmrss]}" -v e="${R[rss.$step.entries]}" \
            'BEGIN { printf "%.0f", (e > 1 ? (r1 - r0) * 1024 / (e - 1) : 0) }')
        log "rss: ~${R[rss.$step.entries]} entries, VmRSS ${R[rss.$step.vmrss]} kB, ${R[rss.$step.bpe]} B per entry"
        rm -f "$TMP/rss.$step.txt"
        prev=$step
    done
    instance_stop rss
}

# hedge: a fresh punctual with both nsd as [upstream] servers (strategy "fastest",
# deadline 2s), unique names at HEDGE_QPS for DURATION s; at DURATION/3 the nsd that
# answered more so far (by CPU time: the one punctual prefers) is held with SIGSTOP
# until the end of the run
hedge() {
    local out="$TMP/hedge.out" third t0 t1 t_end r0 r1 u0 u1 a0 a1 b0 b1 da db victim p k
    head -n $((DURATION * HEDGE_QPS * 2)) "$TMP/miss.txt" > "$TMP/hedge.txt" # small: dnsperf starts at once
    instance_start hedge "[upstream]
servers = [\"$UPSTREAM_ADDR:$UPSTREAM_PORT\", \"$UPSTREAM2_ADDR:$UPSTREAM_PORT\"]
strategy = \"fastest\"

[limits]
deadline = \"2s\"" -
    third=$(awk -v d="$DURATION" 'BEGIN { printf "%.3f", d / 3 }')
    log "hedge: ${DURATION}s of unique names at $HEDGE_QPS q/s; the preferred upstream hangs after ${third}s"
    r0=$(cpu_ticks "$PERF_PID")
    a0=$(cpu_ticks "$NSD_PID")
    b0=$(cpu_ticks "$NSD2_PID")
    t0=$(date +%s.%N)
    "${LOADGEN[@]}" dnsperf -s "$RESOLVER_ADDR" -p "$PERF_PORT" -t "$TIMEOUT" -d "$TMP/hedge.txt" -n 1 \
        -l "$DURATION" -Q "$HEDGE_QPS" -c "$CLIENTS" -q "$HEDGE_OUTSTANDING" -T "$THREADS" -v > "$out" 2> "$out.err" &
    DNSPERF_PID=$!
    sleep "$third" &
    wait $!
    is_running "$DNSPERF_PID" || die "hedge: dnsperf ended before the hang ($(cat "$out.err"))"
    a1=$(cpu_ticks "$NSD_PID")
    b1=$(cpu_ticks "$NSD2_PID")
    da=$((a1 - a0)) db=$((b1 - b0))
    if [ "$db" -gt "$da" ]; then victim=$NSD2_PID R[hedge.victim]=$UPSTREAM2_ADDR; else victim=$NSD_PID R[hedge.victim]=$UPSTREAM_ADDR; fi
    # nsd forks its server processes: stop the whole tree (resume_stopped undoes it)
    for p in $(proc_tree "$victim"); do
        STOPPED_PIDS+=" $p"
        kill -STOP "$p" 2>/dev/null || true
    done
    t1=$(date +%s.%N)
    R[hedge.before_cpu]="$UPSTREAM_ADDR $(ticks_to_s "$da") s, $UPSTREAM2_ADDR $(ticks_to_s "$db") s"
    log "hedge: nsd CPU so far: ${R[hedge.before_cpu]}; stopped ${R[hedge.victim]} (pids$STOPPED_PIDS) at +$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')s"
    if ! wait "$DNSPERF_PID"; then
        DNSPERF_PID=""
        resume_stopped
        cat "$out.err" >&2
        die "dnsperf failed (hedge)"
    fi
    DNSPERF_PID=""
    t_end=$(date +%s.%N)
    resume_stopped
    r1=$(cpu_ticks "$PERF_PID")
    u1=$(($(cpu_ticks "$NSD_PID") + $(cpu_ticks "$NSD2_PID")))
    u0=$((a0 + b0))
    echo "$((r1 - r0)) $((u1 - u0))" > "$out.cpu"
    is_running "$PERF_PID" || die "punctual (hedge) exited during the run"
    record hedge "$out"
    if awk -v q="${R[hedge.qps]}" -v t="$HEDGE_QPS" 'BEGIN { exit !(q < 0.95 * t) }'; then
        log "warning: hedge run reached ${R[hedge.qps]} q/s, short of -Q $HEDGE_QPS"
    fi
    # -v lines come in the order answers (or timeouts) arrived; at a fixed rate, the
    # first (hang - start) / DURATION of the queries sent were answered before the hang
    R[hedge.hang_at]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    R[hedge.runtime_wall]=$(awk -v a="$t0" -v b="$t_end" 'BEGIN { printf "%.3f", b - a }')
    k=$(awk -v s="${R[hedge.sent]}" -v h="${R[hedge.hang_at]}" -v d="$DURATION" 'BEGIN { printf "%d", s * h / d }')
    R[hedge.split]=$k
    awk '$1 == ">" && (NF == 5 || $2 == "T")' "$out" > "$TMP/hedge.lines"
    R[hedge.lines]=$(wc -l < "$TMP/hedge.lines")
    awk '$2 != "T" && $2 != "I" && NF == 5 { print $5 }' "$TMP/hedge.lines" > "$TMP/hedge.all"
    awk -v k="$k" 'NR > k && $2 != "T" && $2 != "I" && NF == 5 { print $5 }' "$TMP/hedge.lines" > "$TMP/hedge.after"
    read -r 'R[hedge.all.n]' 'R[hedge.all.p50]' 'R[hedge.all.p99]' 'R[hedge.all.p999]' < <(pcts "$TMP/hedge.all")
    read -r 'R[hedge.after.n]' 'R[hedge.after.p50]' 'R[hedge.after.p99]' 'R[hedge.after.p999]' < <(pcts "$TMP/hedge.after")
    R[hedge.after.timeouts]=$(awk -v k="$k" 'NR > k && $2 == "T"' "$TMP/hedge.lines" | wc -l)
    R[hedge.after.lost]=$(awk -v t="${R[hedge.after.timeouts]}" -v n="${R[hedge.after.n]}" \
        'BEGIN { printf "%.2f", (t + n ? 100 * t / (t + n) : 0) }')
    instance_stop hedge
    R[hedge.counters]=$(grep -m1 ' final counters ' "$TMP/hedge.log" | sed 's/.* final counters/final counters/')
}

# hung: a fresh resolver; nsd is held with SIGSTOP for the whole run while unique
# names come at HUNG_QPS for HUNG_DURATION s (dnsperf -v, -t HUNG_TIMEOUT, longer
# than the deadline, so late answers are seen). While it runs: VmRSS, and
# punctual's lookups in flight (GET /stats), every 0.25 s.
hung() {
    local out="$TMP/hung.out" bar t0 r0 r1 p el stop_ms check_ms limit_ms zero_at="" n peak=0 kb lk inflight_max=0 at_check=-
    # names no earlier workload asked for
    awk -v n=$((HUNG_QPS * HUNG_DURATION * 11 / 10)) 'BEGIN { for (i = 1; i <= n; i++) printf "u%d.miss.bench.test A\n", i }' \
        > "$TMP/hung.txt"
    instance_start hung "[cache]
entries = $RSS_ENTRIES
max_bytes = \"$RSS_MAX_BYTES\""
    R[hung.rss_before]=$(vm_kb "$INSTANCE_PID" VmRSS)
    for p in $(proc_tree "$NSD_PID"); do
        STOPPED_PIDS+=" $p"
        kill -STOP "$p" 2>/dev/null || true
    done
    log "hung: nsd stopped (pids$STOPPED_PIDS); ${HUNG_DURATION}s of unique names at $HUNG_QPS q/s, dnsperf -t $HUNG_TIMEOUT"
    r0=$(cpu_ticks "$PERF_PID")
    t0=$(date +%s%N)
    "${LOADGEN[@]}" dnsperf -s "$RESOLVER_ADDR" -p "$PERF_PORT" -t "$HUNG_TIMEOUT" -d "$TMP/hung.txt" -n 1 \
        -l "$HUNG_DURATION" -Q "$HUNG_QPS" -c "$CLIENTS" -q "$HUNG_OUTSTANDING" -T "$HUNG_THREADS" -v > "$out" 2> "$out.err" &
    DNSPERF_PID=$!
    # milliseconds since the start: the load stops at stop_ms; one deadline (and a
    # sampling interval) later, nothing may be in flight. Samples go on after dnsperf
    # has exited until that check is taken and the lookups are seen at 0 (or 3 deadlines).
    stop_ms=$((HUNG_DURATION * 1000))
    check_ms=$((stop_ms + HUNG_DEADLINE_MS + 250))
    limit_ms=$((stop_ms + (HUNG_TIMEOUT + 30) * 1000))
    echo "ms VmRSS_kB inflight_lookups" > "$TMP/hung.samples"
    while :; do
        el=$((($(date +%s%N) - t0) / 1000000))
        [ "$el" -lt "$limit_ms" ] || break
        kb=$(vm_kb "$INSTANCE_PID" VmRSS)
        [ "$kb" -le "$peak" ] || peak=$kb
        lk=-
        if [ "$TARGET" = punctual ]; then lk=$(inflight_lookups); fi
        echo "$el $kb $lk" >> "$TMP/hung.samples"
        if [[ $lk =~ ^[0-9]+$ ]]; then
            [ "$lk" -le "$inflight_max" ] || inflight_max=$lk
            if [ "$el" -ge "$stop_ms" ] && [ "$lk" = 0 ] && [ -z "$zero_at" ]; then zero_at=$(((el - stop_ms) / 10)); fi
            if [ "$el" -ge "$check_ms" ] && [ "$at_check" = - ]; then at_check=$lk; fi
        fi
        if ! is_running "$DNSPERF_PID"; then
            [ "$TARGET" = punctual ] || break
            if [ "$at_check" != - ] && { [ -n "$zero_at" ] || [ "$el" -ge $((stop_ms + 3 * HUNG_DEADLINE_MS)) ]; }; then break; fi
        fi
        sleep 0.25
    done
    if is_running "$DNSPERF_PID"; then die "hung: dnsperf still running at the time limit"; fi
    if ! wait "$DNSPERF_PID"; then
        DNSPERF_PID=""
        cat "$out.err" >&2
        die "dnsperf failed (hung)"
    fi
    DNSPERF_PID=""
    r1=$(cpu_ticks "$PERF_PID")
    echo "$((r1 - r0)) 0" > "$out.cpu"
    is_running "$PERF_PID" || die "$TARGET (hung) exited during the run"
    R[hung.rss_after]=$(vm_kb "$INSTANCE_PID" VmRSS)
    kb=$(vm_kb "$INSTANCE_PID" VmHWM)
    [ "$kb" -le "$peak" ] || peak=$kb
    R[hung.rss_peak]=$peak
    if [ "$TARGET" = punctual ]; then
        R[hung.inflight_max]=$inflight_max
        R[hung.inflight_at_deadline]=$at_check
        # zero_at is in hundredths of a second
        R[hung.inflight_zero_after]=$(if [ -n "$zero_at" ]; then awk -v z="$zero_at" 'BEGIN { printf "%.2f", z / 100 }'; else echo never; fi)
        R[hung.inflight_end]=$(inflight_lookups)
    fi
    resume_stopped
    record hung "$out"
    if [ "${R[hung.sent]}" -lt $((HUNG_QPS * HUNG_DURATION * 95 / 100)) ]; then
        log "warning: hung run sent ${R[hung.sent]} queries, short of $HUNG_QPS q/s for ${HUNG_DURATION}s"
    fi
    # every query sent: answered (any rcode) with its latency, or never ("inf")
    bar=$(awk -v d="$HUNG_DEADLINE_MS" 'BEGIN { printf "%.3f", (d + 50) / 1000 }')
    n=${R[hung.sent]}
    read -r 'R[hung.within_pct]' 'R[hung.answered_pct]' 'R[hung.p99]' < <(
        latencies_of "$out" | sort -g |
            awk -v n="$n" -v bar="$bar" '{ v[NR] = $1; if ($1 <= bar) w++ }
                END { if (n == 0) { print "- - -"; exit }
                      i = int(0.99 * n + 0.999999)
                      printf "%.2f %.2f %s\n", 100 * w / n, 100 * NR / n, (i <= NR ? sprintf("%.1f", v[i] * 1000) : "inf") }')
    log "hung: ${R[hung.within_pct]}% answered within ${bar}s, p99 ${R[hung.p99]} ms, rcodes ${R[hung.rcodes]:-none}"
    instance_stop hung
    rm -f "$TMP/hung.txt"
}

# lookups in flight in the instance's punctual, from GET /stats ("-" if unreadable)
inflight_lookups() {
    "$PUNCTUAL" stats --control "$RESOLVER_ADDR:$INSTANCE_CONTROL_PORT" 2>/dev/null |
        tr -d ' \n' | sed -n 's/.*"inflight":{[^}]*"lookups":\([0-9]*\).*/\1/p' | grep . || echo -
}

# latency_run ROW: DURATION s of cached names at LATENCY_QPS with per-response
# latencies (dnsperf -v) -> R[ROW.*], with R[ROW.n], R[ROW.p50], R[ROW.p99], R[ROW.p999]
latency_run() {
    local row=$1 out=$TMP/$1.out
    log "$row: ${DURATION}s of cached names at $LATENCY_QPS q/s"
    dnsperf_run "$out" -d "$TMP/cached.txt" -l "$DURATION" -Q "$LATENCY_QPS" \
        -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS" -v
    record "$row" "$out"
    ROWS+=" $row"
    if awk -v q="${R[$row.qps]}" -v t="$LATENCY_QPS" 'BEGIN { exit !(q < 0.95 * t) }'; then
        log "warning: $row run reached ${R[$row.qps]} q/s, short of -Q $LATENCY_QPS"
    fi
    # -v prints "> RCODE NAME TYPE LATENCY_S" per response ("> T ..." for a timeout)
    latencies_of "$out" > "$TMP/$row.latencies"
    read -r "R[$row.n]" "R[$row.p50]" "R[$row.p99]" "R[$row.p999]" < <(pcts "$TMP/$row.latencies")
}

for w in $WORKLOADS; do
    case $w in
        cached)
            warm
            log "cached: ${DURATION}s at full speed (-c $CLIENTS -q $OUTSTANDING -T $THREADS)"
            dnsperf_run "$TMP/cached.out" -d "$TMP/cached.txt" -l "$DURATION" \
                -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS"
            record cached "$TMP/cached.out"
            ROWS+=" cached"
            ;;
        miss)
            log "miss: ${DURATION}s at full speed over unique names (-c $CLIENTS -q $OUTSTANDING -T $THREADS)"
            dnsperf_run "$TMP/miss.out" -d "$TMP/miss.txt" -n 1 -l "$DURATION" \
                -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS"
            record miss "$TMP/miss.out"
            ROWS+=" miss"
            if [ "${R[miss.sent]}" -ge "$MISS_NAMES" ]; then
                log "warning: the miss run used all $MISS_NAMES names before ${DURATION}s; raise MISS_NAMES"
            fi
            ;;
        latency)
            warm
            latency_run latency
            ;;
        flood)
            warm
            latency_run quiet
            log "flood: $FLOOD_FROM floods $RESOLVER_ADDR:$PERF_PORT with malformed packets (at most $FLOOD_MAX)"
            "${LOADGEN[@]}" "$FLOODER" "$FLOOD_FROM" "$RESOLVER_ADDR:$PERF_PORT" "$((DURATION + 2))" "$FLOOD_MAX" > "$TMP/flood.log" 2>&1 &
            FLOOD_PID=$!
            sleep 1
            latency_run flooded
            wait "$FLOOD_PID" || die "the flooder failed: $(cat "$TMP/flood.log")"
            FLOOD_PID=""
            R[flood.sent]=$(cat "$TMP/flood.log")
            R[flood.added_p99]=$(awk -v a="${R[quiet.p99]}" -v b="${R[flooded.p99]}" 'BEGIN { printf "%+.3f", b - a }')
            R[flood.added_p999]=$(awk -v a="${R[quiet.p999]}" -v b="${R[flooded.p999]}" 'BEGIN { printf "%+.3f", b - a }')
            log "${R[flood.sent]}; p99 ${R[quiet.p99]} -> ${R[flooded.p99]} ms"
            ;;
        shortttl)
            if [ "$SHORT_DURATION" -lt 30 ]; then
                log "warning: SHORT_DURATION=$SHORT_DURATION: the 10-15 s TTLs expire at most twice; use 30 or more"
            fi
            if awk -v n="$SHORT_NAMES" -v q="$SHORT_QPS" 'BEGIN { exit !(n / q >= 1) }'; then
                log "warning: each name is asked every $SHORT_NAMES/$SHORT_QPS s, not within the 1 s prefetch window of a 10 s TTL"
            fi
            for set in ttl1to5 ttl10to15; do
                shortttl "$set" true
                shortttl "$set" false
            done
            ;;
        rss) rss ;;
        hedge) hedge ;;
        hung) hung ;;
        *) die "unknown workload $w (cached | miss | latency | flood | shortttl | rss | hedge | hung)" ;;
    esac
done

RSS_KB=-
if [ -n "$RESOLVER_PID" ] && [ -r "/proc/$RESOLVER_PID/status" ]; then
    RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$RESOLVER_PID/status")
fi

# ---------------------------------------------------------------- report
version_of() {
    case $1 in
        punctual) "$PUNCTUAL" --version 2>/dev/null | head -n1 || echo "punctual (--version failed)" ;;
        unbound) echo "unbound $("$(bin unbound)" -V 2>/dev/null | awk '/^Version/ { print $2; exit }')" ;;
        dnsmasq) "$(bin dnsmasq)" --version 2>/dev/null | awk '{ print $1, $2, $3; exit }' ;;
        nsd) "$NSD_BIN" -v 2>&1 | head -n1 ;;
        dnsperf) dnsperf -h 2>&1 | awk '/^Version/ { print "dnsperf " $2; exit }' ;;
        external) echo "external resolver at $RESOLVER_ADDR:$RESOLVER_PORT (pid ${RESOLVER_PID:-unknown})" ;;
    esac
}

report_classic() {
    local w
    echo "dnsperf -c $CLIENTS -q $OUTSTANDING -T $THREADS -t $TIMEOUT, ${DURATION}s per workload; latency at -Q $LATENCY_QPS; $CACHED_NAMES cached names"
    echo
    printf '%-8s | %10s | %6s | %14s | %17s | %8s | %8s | %8s\n' \
        workload 'q/s' 'lost %' 'resolver CPU s' 'answers per CPU-s' 'p50 ms' 'p99 ms' 'p99.9 ms'
    printf '%s\n' '---------+------------+--------+----------------+-------------------+----------+----------+---------'
    for w in $ROWS; do
        printf '%-8s | %10.0f | %6s | %14s | %17s | %8s | %8s | %8s\n' "$w" "${R[$w.qps]}" "${R[$w.lost]}" \
            "${R[$w.cpu]}" "${R[$w.per_cpu]}" "${R[$w.p50]:--}" "${R[$w.p99]:--}" "${R[$w.p999]:--}"
    done
    echo
    for w in $ROWS; do
        echo "$w: sent ${R[$w.sent]}, answered ${R[$w.completed]} in ${R[$w.runtime]} s; rcodes: ${R[$w.rcodes]:-none}; upstream nsd CPU ${R[$w.upcpu]} s"
    done
    for w in latency quiet flooded; do
        if [[ " $ROWS " == *" $w "* ]]; then
            echo "$w percentiles over ${R[$w.n]} answered queries (dnsperf -v per-response latency; lost queries excluded)"
        fi
    done
    if [[ " $ROWS " == *" flooded "* ]]; then
        echo "flood: ${R[flood.sent]}; added p99 ${R[flood.added_p99]} ms, p99.9 ${R[flood.added_p999]} ms (flooded - quiet)"
    fi
    echo "resolver peak RSS: ${RSS_KB} kB"
}

report_shortttl() {
    local set pf n q m ttl
    echo "shortttl: a fresh punctual per run, [cache] serve_stale = false; $SHORT_NAMES names per set queried in turn,"
    echo "dnsperf -Q $SHORT_QPS -l $SHORT_DURATION -c $CLIENTS -q $OUTSTANDING (each name about every $(awk -v n="$SHORT_NAMES" -v q="$SHORT_QPS" 'BEGIN { printf "%.2f", n / q }') s)"
    echo
    printf '%-9s | %-8s | %8s | %7s | %8s | %21s | %10s | %13s | %10s | %10s | %7s | %6s\n' \
        set prefetch queries misses 'waited %' 'after pass 1: waited' 'waits/name' 'expiries/name' 'stale hits' prefetches lookups 'lost %'
    printf '%s\n' '----------+----------+----------+---------+----------+-----------------------+------------+---------------+------------+------------+---------+-------'
    for set in ttl1to5 ttl10to15; do
        case $set in
            ttl1to5) ttl=1 ;;
            ttl10to15) ttl=10 ;;
        esac
        for pf in true false; do
            n=shortttl.$set.$pf
            q=$((${R[$n.queries_udp]} + ${R[$n.queries_tcp]}))
            m=${R[$n.cache_misses]}
            # the readiness probe is one query and one miss; each name misses once in pass 1
            awk -v set="$set" -v pf="$pf" -v q="$q" -v m="$m" -v names="$SHORT_NAMES" -v d="$SHORT_DURATION" \
                -v ttl="$ttl" -v qps="$SHORT_QPS" -v stale="${R[$n.cache_stale_hits]:--}" -v pre="${R[$n.prefetches]:--}" \
                -v look="${R[$n.lookups_started]:--}" -v lost="${R[$n.lost]}" 'BEGIN {
                    # a name is asked every names/qps s; without prefetch its entry is
                    # fetched again at the first query after expiry: every TTL + that
                    span = ttl == 1 ? 5 : 6
                    for (i = 0; i < names; i++) expiries += int(d / (ttl + i % span + names / qps))
                    later = m - 1 - names; lq = q - 1 - names
                    printf "%-9s | %-8s | %8d | %7d | %8.3f | %9d (%7.3f %%) | %10.2f | %13.2f | %10s | %10s | %7s | %6s\n",
                        set, pf == "true" ? "on" : "off", q, m, (q ? 100 * m / q : 0),
                        later, (lq > 0 ? 100 * later / lq : 0), later / names, expiries / names, stale, pre, look, lost
                }'
        done
    done
    echo
    echo "waited % = cache_misses / (queries_udp + queries_tcp) from punctual's final counters: the queries that"
    echo "waited on an upstream lookup (readiness probe included). after pass 1 leaves out the probe and each name's"
    echo "first miss; waits/name is that count per name. expiries/name = the mean of int(SHORT_DURATION / (TTL + interval)),"
    echo "interval = SHORT_NAMES / SHORT_QPS s between two queries for a name: the waits per name when each expiry costs one."
    echo "prefetch applies to TTLs of 10 s or more only."
}

report_rss() {
    local step prev=0 final
    case $TARGET in
        punctual) echo "rss: a fresh punctual with [cache] entries = $RSS_ENTRIES, max_bytes = \"$RSS_MAX_BYTES\"; unique names r<i>.miss.bench.test" ;;
        *) echo "rss: a fresh $TARGET with room for $RSS_ENTRIES answers (see launch_other); unique names r<i>.miss.bench.test" ;;
    esac
    echo "(the nsd wildcard's A answer, TTL 86400), each sent once: dnsperf -n 1 -c $CLIENTS -q $OUTSTANDING -T $THREADS"
    echo
    printf '%-10s | %10s | %10s | %8s | %6s | %10s | %10s | %10s | %15s\n' \
        point 'names sent' answered 'fill q/s' 'lost %' 'entries' 'VmRSS kB' 'VmHWM kB' 'dRSS/dentry B'
    printf '%s\n' '-----------+------------+------------+----------+--------+------------+------------+------------+----------------'
    printf '%-10s | %10s | %10s | %8s | %6s | %10s | %10s | %10s | %15s\n' \
        before 0 - - - "${R[rss.0.entries]}" "${R[rss.0.vmrss]}" "${R[rss.0.vmhwm]}" -
    for step in $RSS_STEPS; do
        printf '%-10s | %10s | %10s | %8.0f | %6s | %10s | %10s | %10s | %15s\n' \
            "$step" "${R[rss.$step.sent]}" "${R[rss.$step.completed]}" "${R[rss.$step.qps]}" "${R[rss.$step.lost]}" \
            "${R[rss.$step.entries]}" "${R[rss.$step.vmrss]}" "${R[rss.$step.vmhwm]}" \
            "$(awk -v r1="${R[rss.$step.vmrss]}" -v r0="${R[rss.$prev.vmrss]}" -v e1="${R[rss.$step.entries]}" \
                -v e0="${R[rss.$prev.entries]}" 'BEGIN { if (e1 > e0) printf "%.0f", (r1 - r0) * 1024 / (e1 - e0); else print "-" }')"
        prev=$step
    done
    final=$prev
    echo
    for step in $RSS_STEPS; do echo "$step: rcodes: ${R[rss.$step.rcodes]:-none}; resolver CPU ${R[rss.$step.cpu]} s, upstream nsd CPU ${R[rss.$step.upcpu]} s"; done
    if [ "$TARGET" != punctual ]; then
        echo "entries = 1 (the readiness probe) + answers so far; RSS per entry at the end: ${R[rss.$final.bpe]} bytes"
        return 0
    fi
    echo "entries = 1 (the readiness probe) + answers so far; the final counters say cache_entries=${R[rss.cache_entries]}"
    awk -v e="${R[rss.cache_entries]}" -v b="${R[rss.cache_bytes]}" -v r1="${R[rss.$final.vmrss]}" -v r0="${R[rss.0.vmrss]}" 'BEGIN {
        printf "cache_bytes=%d: %.1f bytes per entry by punctual'"'"'s own accounting (cache_bytes / cache_entries)\n", b, (e ? b / e : 0)
        printf "RSS per entry: (VmRSS at the end - before) / (cache_entries - 1) = %.1f bytes; VmRSS %.1f MiB for %d entries\n",
            (e > 1 ? (r1 - r0) * 1024 / (e - 1) : 0), r1 / 1024, e
    }'
}

report_hedge() {
    echo "hedge: a fresh punctual, [upstream] servers = [$UPSTREAM_ADDR:$UPSTREAM_PORT, $UPSTREAM2_ADDR:$UPSTREAM_PORT], strategy \"fastest\","
    echo "[limits] deadline = \"2s\"; unique names, dnsperf -Q $HEDGE_QPS -l $DURATION -c $CLIENTS -q $HEDGE_OUTSTANDING -t $TIMEOUT -v"
    echo "nsd CPU before the hang: ${R[hedge.before_cpu]} -> preferred, and hung with SIGSTOP:"
    echo "${R[hedge.victim]} at +${R[hedge.hang_at]} s of the run (SIGCONT after the run)"
    echo
    printf '%-12s | %8s | %8s | %8s | %8s | %8s | %8s\n' part answered timeouts 'lost %' 'p50 ms' 'p99 ms' 'p99.9 ms'
    printf '%s\n' '-------------+----------+----------+----------+----------+----------+---------'
    printf '%-12s | %8s | %8s | %8s | %8s | %8s | %8s\n' 'whole run' "${R[hedge.all.n]}" \
        "$((${R[hedge.sent]} - ${R[hedge.completed]}))" "${R[hedge.lost]}" "${R[hedge.all.p50]}" "${R[hedge.all.p99]}" "${R[hedge.all.p999]}"
    printf '%-12s | %8s | %8s | %8s | %8s | %8s | %8s\n' 'after hang' "${R[hedge.after.n]}" \
        "${R[hedge.after.timeouts]}" "${R[hedge.after.lost]}" "${R[hedge.after.p50]}" "${R[hedge.after.p99]}" "${R[hedge.after.p999]}"
    echo
    echo "sent ${R[hedge.sent]}, answered ${R[hedge.completed]} at ${R[hedge.qps]} q/s; rcodes: ${R[hedge.rcodes]:-none}"
    echo "after hang = the -v lines after the first ${R[hedge.split]} of ${R[hedge.lines]} (sent x hang instant / DURATION)"
    echo "punctual: upstream_queries=${R[hedge.upstream_queries]:--} upstream_probes=${R[hedge.upstream_probes]:-(not logged)}" \
        "lookup_timeouts=${R[hedge.lookup_timeouts]:--} lookups_started=${R[hedge.lookups_started]:--}"
    echo "${R[hedge.counters]}"
    echo "expected: no losses; p99 after the hang below the hung upstream's RTO (at least 50 ms) + the other's RTT"
}

report_hung() {
    echo "hung: a fresh $TARGET (room for $RSS_ENTRIES answers); nsd held with SIGSTOP for the whole run; unique names u<i>.miss.bench.test,"
    echo "dnsperf -Q $HUNG_QPS -l $HUNG_DURATION -c $CLIENTS -q $HUNG_OUTSTANDING -T $HUNG_THREADS -t $HUNG_TIMEOUT -v"
    echo
    echo "sent ${R[hung.sent]}; answered (any rcode) ${R[hung.answered_pct]} %, within $((HUNG_DEADLINE_MS + 50)) ms ${R[hung.within_pct]} %;" \
        "answer time p99 ${R[hung.p99]} ms (unanswered queries count as infinite)"
    echo "rcodes: ${R[hung.rcodes]:-none}; resolver CPU ${R[hung.cpu]} s"
    echo "VmRSS before ${R[hung.rss_before]} kB, peak ${R[hung.rss_peak]} kB (max of 0.25 s samples and VmHWM), after ${R[hung.rss_after]} kB"
    if [ "$TARGET" = punctual ]; then
        echo "lookups in flight (GET /stats): at most ${R[hung.inflight_max]}; ${HUNG_DEADLINE_MS} ms + 250 ms after the load stopped:" \
            "${R[hung.inflight_at_deadline]} (expected 0); first seen at 0 ${R[hung.inflight_zero_after]} s after it stopped; at the end ${R[hung.inflight_end]}"
    fi
}

report() {
    local w
    if [ -n "$CLASSIC" ]; then
        echo "punctual load benchmark — target: $TARGET at $RESOLVER_ADDR:$RESOLVER_PORT, upstream nsd at $UPSTREAM_ADDR:$UPSTREAM_PORT"
        report_classic
    else
        echo "punctual load benchmark — $TARGET at $RESOLVER_ADDR:$INSTANCE_PORT, upstream nsd at $UPSTREAM_ADDR:$UPSTREAM_PORT"
    fi
    for w in $OWN; do
        echo
        "report_$w"
    done
    echo
    echo "versions:"
    echo "  target:  $(version_of "$TARGET")"
    if [ "$TARGET" != nsd ]; then echo "  nsd:     $(version_of nsd)"; fi
    echo "  dnsperf: $(version_of dnsperf)"
    if [ "$TARGET" = punctual ]; then echo "  rustc:   $(rustc --version 2>/dev/null || echo unknown)"; fi
    echo "  host:    $(uname -sr), $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
    echo "  pinning: resolver=${RESOLVER_CPUS:-none} upstream=${UPSTREAM_CPUS:-none} dnsperf=${LOADGEN_CPUS:-none}"
}

report > "$TMP/report.txt"
cat "$TMP/report.txt"
if [ -n "$OUT" ]; then
    cp "$TMP/report.txt" "$OUT"
    log "report written to $OUT"
fi
if [ -n "$TSV" ]; then
    R[target]=$TARGET
    R[peak_rss_kb]=$RSS_KB
    for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | LC_ALL=C sort > "$TSV"
    log "figures written to $TSV"
fi
