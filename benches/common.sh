# benches/common.sh — helpers shared by load.sh and soak.sh; sourced, not run.
#
# The sourcing script sets BENCH (its name, for log lines) and, before calling
# the helpers that use them: TMP (its scratch directory), READY_TIMEOUT (seconds
# wait_ready waits), UPSTREAM_PORT, NSD_SERVERS and UPSTREAM_CPUS (start_nsd).
# STOPPED_PIDS lists processes held with SIGSTOP; resume_stopped resumes them,
# and a script's cleanup must call it before stopping anything.
# shellcheck shell=bash

CLK_TCK=$(getconf CLK_TCK)
STOPPED_PIDS=""
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_STATE=""                            # "", "created" or a backup path

log() { printf '%s: %s\n' "$BENCH" "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
bin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

is_loopback() { [[ $1 =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; }
is_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

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

# kill_after PID TENTHS WHAT: wait up to TENTHS x 0.1 s for PID to exit, then SIGKILL it
kill_after() {
    local pid=$1 tenths=$2 what=$3 i
    for ((i = 0; i < tenths; i++)); do
        is_running "$pid" || return 0
        sleep 0.1
    done
    if is_running "$pid"; then
        log "$what; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 5 s, SIGKILL; reap; same for leftover descendants
    local pid=$1 name=$2 p tree
    [ -n "$pid" ] || return 0
    tree=$(proc_tree "$pid" | tail -n +2)
    kill -TERM "$pid" 2>/dev/null || true
    kill_after "$pid" 50 "$name (pid $pid) ignored SIGTERM"
    wait "$pid" 2>/dev/null || true
    # children it forked (nsd's server processes) must not outlive it
    for p in $tree; do
        kill_after "$p" 20 "$name child pid $p still running"
    done
}

# remove_tmp: delete the run's directory TMP, or keep it (and say so) with KEEP_TMP=1
remove_tmp() {
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$KEEP_TMP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    fi
}

# trap_cleanup: run the script's own `cleanup` on exit, and exit on INT or TERM so it runs
trap_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# SIGCONT every process in STOPPED_PIDS (a stopped process would not act on SIGTERM)
resume_stopped() {
    local p
    for p in $STOPPED_PIDS; do kill -CONT "$p" 2>/dev/null || true; done
    STOPPED_PIDS=""
}

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

# install_missing COMMAND:PACKAGE...: apt-get install the Debian package of each
# command not on the PATH (nor in /usr/sbin), without starting its system service
install_missing() {
    local -a need=()
    local pair
    for pair in "$@"; do
        have "${pair%%:*}" || need+=("${pair#*:}")
    done
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

# start_nsd NAME ADDR PIDVAR: nsd serving bench.test on ADDR:UPSTREAM_PORT, files
# $TMP/NAME.*; its pid goes into PIDVAR (before the wait, so that cleanup stops it)
start_nsd() {
    local name=$1 addr=$2 pidvar=$3
    cat > "$TMP/$name.conf" <<EOF
server:
    ip-address: $addr@$UPSTREAM_PORT
    port: $UPSTREAM_PORT
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$TMP"
    pidfile: "$TMP/$name.pid"
    database: ""
    zonelistfile: "$TMP/$name.zonelist"
    xfrdfile: "$TMP/$name.xfrd.state"
    xfrdir: "$TMP"
    logfile: "$TMP/$name.log"
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
    "$(bin nsd-checkconf)" "$TMP/$name.conf" || die "nsd-checkconf rejected $TMP/$name.conf"
    [ -z "$(probe "$addr" "$UPSTREAM_PORT")" ] || die "something already answers on $addr:$UPSTREAM_PORT"
    launch "$UPSTREAM_CPUS" "$TMP/$name.out" "$(bin nsd)" -d -c "$TMP/$name.conf"
    printf -v "$pidvar" %s "$LAUNCHED_PID"
    wait_ready "$name" "$addr" "$UPSTREAM_PORT" "$LAUNCHED_PID" "$TMP/$name.log"
}

vm_kb() { # vm_kb PID FIELD -> FIELD (VmRSS, VmHWM) of /proc/PID/status in kB
    awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"
}

# pcts FILE: "N P50 P99 P99.9" (ms) of the latencies in seconds in FILE, one a line
pcts() {
    sort -g "$1" | awk '{ v[NR] = $1 }
         function pct(p,   i) { i = int(p * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; return v[i] * 1000 }
         END { if (NR == 0) { print 0, "-", "-", "-"; exit }
               printf "%d %.3f %.3f %.3f\n", NR, pct(0.50), pct(0.99), pct(0.999) }'
}

stat_of() { # stat_of FILE LABEL -> first number after "LABEL:" in dnsperf's summary
    awk -v l="$2:" '(i = index($0, l)) { split(substr($0, i + length(l)), a, " "); print a[1]; exit }' "$1"
}

# latencies_of FILE: the latency in seconds of each answered query, one a line,
# from dnsperf -v output ("> RCODE NAME TYPE LATENCY_S"; "> T ..." is a timeout)
latencies_of() {
    awk '$1 == ">" && $2 != "T" && $2 != "I" && NF == 5 { print $5 }' "$1"
}
