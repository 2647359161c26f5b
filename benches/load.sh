#!/usr/bin/env bash
# benches/load.sh — load benchmark of punctual (or a stand-in resolver).
#
# Starts an authoritative upstream (nsd) serving `bench.test.` on loopback,
# starts the resolver under test forwarding to it, and drives it with dnsperf:
#
#   cached   cached names at full speed   -> q/s, lost %, resolver CPU, answers/CPU-s
#   miss     unique names at full speed   -> same (every query goes upstream)
#   latency  cached names at a fixed rate -> p50 / p99 / p99.9 from per-query latencies
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
DEFAULT_PUNCTUAL=target/release/punctual
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
WORKLOADS=${WORKLOADS:-cached miss latency}
NSD_SERVERS=${NSD_SERVERS:-1}                 # nsd server-count
UNBOUND_THREADS=${UNBOUND_THREADS:-$(nproc)}
RESOLVER_CPUS=${RESOLVER_CPUS:-}              # taskset -c lists; empty = no pinning
UPSTREAM_CPUS=${UPSTREAM_CPUS:-}
LOADGEN_CPUS=${LOADGEN_CPUS:-}
READY_TIMEOUT=${READY_TIMEOUT:-20}            # seconds to wait for a server to answer
OUT=${OUT:-}                                  # also write the report to this file
KEEP_TMP=${KEEP_TMP:-0}

# ---------------------------------------------------------------- helpers
log() { printf 'load.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
bin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

is_loopback() { [[ $1 =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; }
is_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }
for v in UPSTREAM_ADDR RESOLVER_ADDR; do
    is_loopback "${!v}" || die "$v=${!v} is not a 127.0.0.0/8 address; this script only talks to loopback"
done
for v in UPSTREAM_PORT RESOLVER_PORT; do is_port "${!v}" || die "$v=${!v} is not a port"; done
for v in DURATION CLIENTS OUTSTANDING THREADS TIMEOUT LATENCY_QPS CACHED_NAMES MISS_NAMES NSD_SERVERS; do
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

CLK_TCK=$(getconf CLK_TCK)
TMP=""
NSD_PID=""
SERVER_PID=""                                 # resolver process this script started
DNSPERF_PID=""
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_STATE=""                            # "", "created" or a backup path

restore_policy_rc() {
    case $POLICY_RC_STATE in
        "") ;;
        created) rm -f "$POLICY_RC" ;;
        *) mv -f "$POLICY_RC_STATE" "$POLICY_RC" ;;
    esac
    POLICY_RC_STATE=""
}

is_running() { # alive and not a zombie
    local st
    st=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 5 s, SIGKILL; reap; same for leftover descendants
    local pid=$1 name=$2 i p tree
    [ -n "$pid" ] || return 0
    tree=$(proc_tree "$pid" | tail -n +2)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        is_running "$pid" || break
        sleep 0.1
    done
    if is_running "$pid"; then
        log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    # children it forked (nsd's server processes) must not outlive it
    for p in $tree; do
        for ((i = 0; i < 20; i++)); do
            is_running "$p" || break
            sleep 0.1
        done
        if is_running "$p"; then
            log "$name child pid $p still running; sending SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    restore_policy_rc
    stop_pid "$DNSPERF_PID" dnsperf
    stop_pid "$SERVER_PID" "$TARGET"
    stop_pid "$NSD_PID" nsd
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$KEEP_TMP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# pids of $1 and all its descendants
proc_tree() {
    local root=$1 st line rest pid
    local -a f queue
    local -A kids=()
    for st in /proc/[0-9]*/stat; do
        { read -r line < "$st"; } 2>/dev/null || continue
        pid=${line%% *}
        rest=${line##*) }
        read -ra f <<< "$rest"
        kids[${f[1]}]+=" $pid"
    done
    queue=("$root")
    while [ ${#queue[@]} -gt 0 ]; do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        echo "$pid"
        if [ -n "${kids[$pid]:-}" ]; then
            # shellcheck disable=SC2206
            queue+=(${kids[$pid]})
        fi
    done
}

# utime+stime clock ticks of a process tree (all threads of each process)
cpu_ticks() {
    local total=0 pid line rest
    local -a f
    [ -n "$1" ] || { echo 0; return; }
    for pid in $(proc_tree "$1"); do
        { read -r line < "/proc/$pid/stat"; } 2>/dev/null || continue
        rest=${line##*) }
        read -ra f <<< "$rest"
        # fields after "comm)": [0]=state(3) ... [11]=utime(14) [12]=stime(15)
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# answer to `dig ready.bench.test A` at ADDR PORT, empty if none
# (dig +short prints its errors on stdout too: keep only address lines)
probe() {
    { dig +short +tries=1 +time=1 -p "$2" "@$1" ready.bench.test A 2>/dev/null || true; } |
        grep -E '^[0-9]+(\.[0-9]+){3}$' || true
}

wait_ready() { # wait_ready NAME ADDR PORT PID LOGFILE
    local name=$1 addr=$2 port=$3 pid=$4 logf=$5 deadline=$((SECONDS + READY_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        if [ -n "$pid" ] && ! is_running "$pid"; then
            [ -f "$logf" ] && tail -n 20 "$logf" >&2
            die "$name exited before answering"
        fi
        if [ "$(probe "$addr" "$port")" = 127.0.0.1 ]; then
            log "$name answers on $addr:$port"
            return 0
        fi
        sleep 0.2
    done
    [ -f "$logf" ] && tail -n 20 "$logf" >&2
    die "$name did not answer on $addr:$port within ${READY_TIMEOUT}s"
}

# start a server in the background, optionally pinned; sets LAUNCHED_PID
launch() { # launch CPUS LOGFILE CMD...
    local cpus=$1 logf=$2
    shift 2
    if [ -n "$cpus" ]; then
        taskset -c "$cpus" "$@" > "$logf" 2>&1 &
    else
        "$@" > "$logf" 2>&1 &
    fi
    LAUNCHED_PID=$!
}

# ---------------------------------------------------------------- install
install_missing() {
    local -a need=()
    have dnsperf || need+=(dnsperf)
    have nsd || need+=(nsd)
    have dig || need+=(bind9-dnsutils)
    have taskset || need+=(util-linux)
    case $TARGET in
        unbound) have unbound || need+=(unbound) ;;
        dnsmasq) have dnsmasq || need+=(dnsmasq-base) ;;
    esac
    [ ${#need[@]} -gt 0 ] || return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${need[*]}; run as root so apt-get can install them"
    log "installing ${need[*]} from Debian"
    local before pid pidfile s
    before=" $(pidof nsd unbound dnsmasq 2>/dev/null || true) "
    # keep the packages' maintainer scripts from starting system services
    if [ -e "$POLICY_RC" ]; then
        POLICY_RC_STATE=$(mktemp)
        cp -p "$POLICY_RC" "$POLICY_RC_STATE"
    else
        POLICY_RC_STATE=created
    fi
    printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC"
    chmod 755 "$POLICY_RC"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
    restore_policy_rc
    # belt and braces: no system service of these may stay up
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        for s in nsd unbound dnsmasq; do
            if systemctl is-active --quiet "$s" 2>/dev/null; then systemctl stop "$s" || true; fi
        done
    fi
    # without systemd: a service started anyway has the Debian pidfile; stop only
    # such a process, and only if it appeared during this installation
    for pidfile in /run/nsd/nsd.pid /run/unbound.pid /run/dnsmasq/dnsmasq.pid; do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && [[ $before != *" $pid "* ]] && is_running "$pid"; then
            log "stopping pid $pid ($pidfile) started by package installation"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
}

install_missing
NSD_BIN=$(bin nsd)

# ---------------------------------------------------------------- punctual build
if [ "$TARGET" = punctual ]; then
    if [ "$PUNCTUAL" = "$DEFAULT_PUNCTUAL" ] && [ "$BUILD" = 1 ]; then
        log "cargo build --release"
        cargo build --release >&2
    fi
    [ -x "$PUNCTUAL" ] || die "$PUNCTUAL is not an executable (set PUNCTUAL=path)"
fi

# ---------------------------------------------------------------- data and upstream
TMP=$(mktemp -d /tmp/punctual-load.XXXXXX)
log "generating zone and query files in $TMP ($CACHED_NAMES cached names, $MISS_NAMES miss names)"
"$SCRIPT_DIR/gen-zone.sh" "$TMP" "$CACHED_NAMES" "$MISS_NAMES"

cat > "$TMP/nsd.conf" <<EOF
server:
    ip-address: $UPSTREAM_ADDR@$UPSTREAM_PORT
    port: $UPSTREAM_PORT
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$TMP"
    pidfile: "$TMP/nsd.pid"
    database: ""
    zonelistfile: "$TMP/nsd.zonelist"
    xfrdfile: "$TMP/nsd.xfrd.state"
    xfrdir: "$TMP"
    logfile: "$TMP/nsd.log"
    server-count: $NSD_SERVERS
    reuseport: yes
    verbosity: 0
    hide-version: yes
    # the miss workload hammers one wildcard: response rate limiting must be off
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "bench.test"
    zonefile: "bench.test.zone"
EOF
"$(bin nsd-checkconf)" "$TMP/nsd.conf" || die "nsd-checkconf rejected $TMP/nsd.conf"
[ -z "$(probe "$UPSTREAM_ADDR" "$UPSTREAM_PORT")" ] || die "something already answers on $UPSTREAM_ADDR:$UPSTREAM_PORT"
launch "$UPSTREAM_CPUS" "$TMP/nsd.out" "$NSD_BIN" -d -c "$TMP/nsd.conf"
NSD_PID=$LAUNCHED_PID
wait_ready nsd "$UPSTREAM_ADDR" "$UPSTREAM_PORT" "$NSD_PID" "$TMP/nsd.log"

# ---------------------------------------------------------------- resolver
if [ "$TARGET" != nsd ] && [ "$TARGET" != external ]; then
    [ -z "$(probe "$RESOLVER_ADDR" "$RESOLVER_PORT")" ] || die "something already answers on $RESOLVER_ADDR:$RESOLVER_PORT"
fi
case $TARGET in
    punctual)
        args=(run)
        if [ -f "$PUNCTUAL_CONFIG" ]; then
            args+=(--config "$PUNCTUAL_CONFIG")
        else
            log "warning: $PUNCTUAL_CONFIG not found; starting punctual without --config"
        fi
        args+=(--listen "$RESOLVER_ADDR:$RESOLVER_PORT" --upstream "$UPSTREAM_ADDR:$UPSTREAM_PORT"
            --log-level "$PUNCTUAL_LOG_LEVEL")
        # shellcheck disable=SC2206
        args+=($PUNCTUAL_ARGS)
        log "starting $PUNCTUAL ${args[*]}"
        launch "$RESOLVER_CPUS" "$TMP/resolver.log" "$PUNCTUAL" "${args[@]}"
        SERVER_PID=$LAUNCHED_PID
        ;;
    unbound)
        cat > "$TMP/unbound.conf" <<EOF
server:
    interface: $RESOLVER_ADDR@$RESOLVER_PORT
    port: $RESOLVER_PORT
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$TMP"
    pidfile: "$TMP/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: $UNBOUND_THREADS
    so-reuseport: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    local-zone: "test." nodefault
    domain-insecure: "test."
remote-control:
    control-enable: no
# everything, the root included, goes to the loopback upstream: nothing else is ever contacted
forward-zone:
    name: "."
    forward-addr: $UPSTREAM_ADDR@$UPSTREAM_PORT
EOF
        "$(bin unbound-checkconf)" "$TMP/unbound.conf" >&2 || die "unbound-checkconf rejected $TMP/unbound.conf"
        launch "$RESOLVER_CPUS" "$TMP/resolver.log" "$(bin unbound)" -d -c "$TMP/unbound.conf"
        SERVER_PID=$LAUNCHED_PID
        ;;
    dnsmasq)
        launch "$RESOLVER_CPUS" "$TMP/resolver.log" "$(bin dnsmasq)" -k -C /dev/null --no-resolv --no-hosts \
            --server="$UPSTREAM_ADDR#$UPSTREAM_PORT" --listen-address="$RESOLVER_ADDR" --port="$RESOLVER_PORT" \
            --bind-interfaces --cache-size=10000 --pid-file="$TMP/dnsmasq.pid" --user=root --log-facility=-
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

# ---------------------------------------------------------------- workloads
LOADGEN=()
if [ -n "$LOADGEN_CPUS" ]; then LOADGEN=(taskset -c "$LOADGEN_CPUS"); fi

# dnsperf_run OUTFILE ARGS...: run dnsperf against the resolver, capture
# resolver and upstream CPU ticks around it into OUTFILE.cpu
dnsperf_run() {
    local out=$1 r0 r1 u0 u1
    shift
    r0=$(cpu_ticks "$RESOLVER_PID")
    u0=$(cpu_ticks "$NSD_PID")
    # in the background so that a signal to this script interrupts the wait
    "${LOADGEN[@]}" dnsperf -s "$RESOLVER_ADDR" -p "$RESOLVER_PORT" -t "$TIMEOUT" "$@" > "$out" 2> "$out.err" &
    DNSPERF_PID=$!
    if ! wait "$DNSPERF_PID"; then
        DNSPERF_PID=""
        cat "$out.err" >&2
        die "dnsperf failed ($*)"
    fi
    DNSPERF_PID=""
    r1=$(cpu_ticks "$RESOLVER_PID")
    u1=$(cpu_ticks "$NSD_PID")
    echo "$((r1 - r0)) $((u1 - u0))" > "$out.cpu"
    if [ -n "$RESOLVER_PID" ] && ! is_running "$RESOLVER_PID"; then
        [ -f "$TMP/resolver.log" ] && tail -n 20 "$TMP/resolver.log" >&2
        die "$TARGET exited during the run"
    fi
}

stat_of() { # stat_of FILE LABEL -> first number after "LABEL:"
    awk -v l="$2:" '(i = index($0, l)) { split(substr($0, i + length(l)), a, " "); print a[1]; exit }' "$1"
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
    if [ -n "$RESOLVER_PID" ]; then
        R[$w.cpu]=$(ticks_to_s "$cpu")
        R[$w.per_cpu]=$(awk -v n="$completed" -v t="$cpu" -v hz="$CLK_TCK" \
            'BEGIN { if (t > 0) printf "%.0f", n * hz / t; else print "-" }')
    else
        R[$w.cpu]=-
        R[$w.per_cpu]=-
    fi
    log "$w: ${R[$w.qps]} q/s, lost ${R[$w.lost]}%, resolver CPU ${R[$w.cpu]} s"
}

for w in $WORKLOADS; do
    case $w in
        cached)
            warm
            log "cached: ${DURATION}s at full speed (-c $CLIENTS -q $OUTSTANDING -T $THREADS)"
            dnsperf_run "$TMP/cached.out" -d "$TMP/cached.txt" -l "$DURATION" \
                -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS"
            record cached "$TMP/cached.out"
            ;;
        miss)
            log "miss: ${DURATION}s at full speed over unique names (-c $CLIENTS -q $OUTSTANDING -T $THREADS)"
            dnsperf_run "$TMP/miss.out" -d "$TMP/miss.txt" -n 1 -l "$DURATION" \
                -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS"
            record miss "$TMP/miss.out"
            if [ "${R[miss.sent]}" -ge "$MISS_NAMES" ]; then
                log "warning: the miss run used all $MISS_NAMES names before ${DURATION}s; raise MISS_NAMES"
            fi
            ;;
        latency)
            warm
            log "latency: ${DURATION}s of cached names at $LATENCY_QPS q/s"
            dnsperf_run "$TMP/latency.out" -d "$TMP/cached.txt" -l "$DURATION" -Q "$LATENCY_QPS" \
                -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS" -v
            record latency "$TMP/latency.out"
            if awk -v q="${R[latency.qps]}" -v t="$LATENCY_QPS" 'BEGIN { exit !(q < 0.95 * t) }'; then
                log "warning: latency run reached ${R[latency.qps]} q/s, short of -Q $LATENCY_QPS"
            fi
            # -v prints "> RCODE NAME TYPE LATENCY_S" per response ("> T ..." for a timeout)
            awk '$1 == ">" && $2 != "T" && $2 != "I" && NF == 5 { print $5 }' "$TMP/latency.out" |
                sort -g > "$TMP/latencies.txt"
            read -r 'R[latency.n]' 'R[latency.p50]' 'R[latency.p99]' 'R[latency.p999]' < <(
                awk '{ v[NR] = $1 }
                     function pct(p,   i) { i = int(p * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; return v[i] * 1000 }
                     END { if (NR == 0) { print 0, "-", "-", "-"; exit }
                           printf "%d %.3f %.3f %.3f\n", NR, pct(0.50), pct(0.99), pct(0.999) }' "$TMP/latencies.txt")
            ;;
        *) die "unknown workload $w (cached | miss | latency)" ;;
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

report() {
    local w
    echo "punctual load benchmark — target: $TARGET at $RESOLVER_ADDR:$RESOLVER_PORT, upstream nsd at $UPSTREAM_ADDR:$UPSTREAM_PORT"
    echo "dnsperf -c $CLIENTS -q $OUTSTANDING -T $THREADS -t $TIMEOUT, ${DURATION}s per workload; latency at -Q $LATENCY_QPS; $CACHED_NAMES cached names"
    echo
    printf '%-8s | %10s | %6s | %14s | %17s | %8s | %8s | %8s\n' \
        workload 'q/s' 'lost %' 'resolver CPU s' 'answers per CPU-s' 'p50 ms' 'p99 ms' 'p99.9 ms'
    printf '%s\n' '---------+------------+--------+----------------+-------------------+----------+----------+---------'
    for w in $WORKLOADS; do
        printf '%-8s | %10.0f | %6s | %14s | %17s | %8s | %8s | %8s\n' "$w" "${R[$w.qps]}" "${R[$w.lost]}" \
            "${R[$w.cpu]}" "${R[$w.per_cpu]}" "${R[$w.p50]:--}" "${R[$w.p99]:--}" "${R[$w.p999]:--}"
    done
    echo
    for w in $WORKLOADS; do
        echo "$w: sent ${R[$w.sent]}, answered ${R[$w.completed]} in ${R[$w.runtime]} s; rcodes: ${R[$w.rcodes]:-none}; upstream nsd CPU ${R[$w.upcpu]} s"
    done
    if [[ " $WORKLOADS " == *" latency "* ]]; then
        echo "latency percentiles over ${R[latency.n]} answered queries (dnsperf -v per-response latency; lost queries excluded)"
    fi
    echo "resolver peak RSS: ${RSS_KB} kB"
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
