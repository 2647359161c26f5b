#!/usr/bin/env bash
# benches/profile.sh — where a resolver's CPU goes, per answer, under one load.sh workload.
#
# Runs `benches/load.sh` with one workload (cached or miss) and, while dnsperf
# drives the resolver, samples it with `perf record -e cpu-clock -g` and counts
# its system calls with `perf stat`. Prints one table: CPU per answer split into
# user space and the kernel work under each kind of system call, and the
# loopback delivery a send does for its receiver (net_rx_action). So a figure
# that cannot move by changing the resolver's own code shows as such.
#
#   sudo benches/profile.sh                     # punctual, cached then miss
#   sudo TARGET=unbound benches/profile.sh      # the same for unbound (or dnsmasq)
#   sudo WORKLOADS=miss PROFILE_SECONDS=5 benches/profile.sh
#
# Needs perf with kernel symbols (Debian's linux-perf; installed when missing) and
# a kernel that allows the cpu-clock event; it says so and stops otherwise.
# Everything load.sh takes passes through (PUNCTUAL, BUILD; DURATION is set here,
# CACHE_ENTRIES defaults to compare.sh's 1,100,000).
# Traffic only goes to 127.0.0.0/8, as with load.sh.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$SCRIPT_DIR/.."
BENCH=profile.sh
# shellcheck source=benches/common.sh
. "$SCRIPT_DIR/common.sh"

TARGET=${TARGET:-punctual}
WORKLOADS=${WORKLOADS:-cached miss}
PROFILE_SECONDS=${PROFILE_SECONDS:-8}         # perf's window, inside the workload
SETTLE_SECONDS=${SETTLE_SECONDS:-2}           # from the workload's start to perf's
RESOLVER_ADDR=${RESOLVER_ADDR:-127.0.0.202}
RESOLVER_PORT=${RESOLVER_PORT:-5302}
READY_TIMEOUT=${READY_TIMEOUT:-120}
KEEP_TMP=${KEEP_TMP:-0}
# The cache room compare.sh gives every resolver: with load.sh's default of
# 10,000 for dnsmasq, its misses evict all the time (about 5 times the CPU).
export CACHE_ENTRIES=${CACHE_ENTRIES:-1100000}

for w in $WORKLOADS; do
    case $w in cached | miss) ;; *) die "WORKLOADS: only cached and miss (got $w)" ;; esac
done
if ! [[ $PROFILE_SECONDS =~ ^[1-9][0-9]*$ ]]; then die "PROFILE_SECONDS must be a whole number of seconds, 1 or more"; fi
[[ $SETTLE_SECONDS =~ ^[0-9]+$ ]] || die "SETTLE_SECONDS must be a whole number of seconds"
install_missing perf:linux-perf ss:iproute2
perf stat -e cpu-clock true >/dev/null 2>&1 || die "perf cannot count cpu-clock here (perf_event_paranoid, or no perf events in this kernel)"

TMP=$(mktemp -d /tmp/punctual-profile.XXXXXX)
LOAD_PID=""
cleanup() {
    if [ -n "$LOAD_PID" ] && is_running "$LOAD_PID"; then
        kill -TERM "$LOAD_PID" 2>/dev/null || true
        kill_after "$LOAD_PID" 30 "load.sh pid $LOAD_PID still running"
    fi
    remove_tmp
}
trap_cleanup

# resolver_pid: the process bound to the resolver's UDP address
resolver_pid() {
    ss -H -u -l -n -p "src $RESOLVER_ADDR:$RESOLVER_PORT" 2>/dev/null |
        grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}

# children_pct REPORT SYMBOL...: the summed "children" share of these kernel symbols
children_pct() {
    local report=$1
    shift
    awk -v syms=" $* " '$3 == "[k]" && index(syms, " " $4 " ") { sum += $1 } END { printf "%.1f", sum + 0 }' "$report"
}

# profile WORKLOAD: one load.sh run with perf attached; prints the table rows
profile() {
    local w=$1
    local load="$TMP/$w.load" pid qps cpu_ms answers syscalls report
    # long enough for perf's window after the settling time, with a margin
    local duration=$((SETTLE_SECONDS + PROFILE_SECONDS + 4))
    log "$w: load.sh for ${duration}s, perf for ${PROFILE_SECONDS}s after ${SETTLE_SECONDS}s"
    TARGET=$TARGET WORKLOADS=$w DURATION=$duration RESOLVER_ADDR=$RESOLVER_ADDR RESOLVER_PORT=$RESOLVER_PORT \
        "$SCRIPT_DIR/load.sh" > "$load" 2> "$load.err" &
    LOAD_PID=$!
    # load.sh's own start (zone, nsd, resolver, cache warm-up) is bounded by READY_TIMEOUT too
    local deadline=$((SECONDS + READY_TIMEOUT))
    until grep -q "$w: ${duration}s" "$load.err" 2>/dev/null; do
        is_running "$LOAD_PID" || { cat "$load.err" >&2; die "load.sh ended before the $w workload"; }
        [ $SECONDS -lt $deadline ] || die "the $w workload did not start within ${READY_TIMEOUT}s"
        sleep 0.2
    done
    sleep "$SETTLE_SECONDS"
    pid=$(resolver_pid)
    [ -n "$pid" ] || die "no process holds udp $RESOLVER_ADDR:$RESOLVER_PORT"
    perf stat -x, -e task-clock,raw_syscalls:sys_enter,context-switches -p "$pid" -o "$TMP/$w.stat" \
        -- sleep "$PROFILE_SECONDS" &
    local stat_pid=$!
    perf record -q -e cpu-clock -g -p "$pid" -o "$TMP/$w.data" -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1
    wait "$stat_pid"
    wait "$LOAD_PID" || die "load.sh failed; see $load.err"
    LOAD_PID=""
    qps=$(awk -v w="$w" '$1 == w && $2 == "|" { print $3; exit }' "$load")
    [ -n "$qps" ] || die "no $w figure in load.sh's report"
    cpu_ms=$(awk -F, '$3 == "task-clock" { print $1 }' "$TMP/$w.stat")
    syscalls=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$TMP/$w.stat")
    answers=$(awk -v q="$qps" -v s="$PROFILE_SECONDS" 'BEGIN { printf "%d", q * s }')
    report="$TMP/$w.children"
    perf report -i "$TMP/$w.data" --stdio --children --sort sym -g none 2>/dev/null | grep '%' > "$report"
    local kernel
    kernel=$(perf report -i "$TMP/$w.data" --stdio --no-children --sort dso -g none 2>/dev/null |
        awk '/\[kernel\.kallsyms\]/ { print $1 + 0; exit }')
    local send recv wait life delivery
    # The kernel functions that do each system call's work, one per call, so
    # that none is counted twice (a thin __x64_sys_ wrapper may be a tail call,
    # absent from the stack).
    send=$(children_pct "$report" __sys_sendmmsg __sys_sendmsg __sys_sendto ksys_write)
    recv=$(children_pct "$report" do_recvmmsg __sys_recvmsg __sys_recvfrom ksys_read)
    wait=$(children_pct "$report" do_epoll_wait do_sys_poll do_futex core_sys_select)
    life=$(children_pct "$report" __sys_socket __sys_connect __sys_bind do_epoll_ctl __x64_sys_close)
    delivery=$(children_pct "$report" net_rx_action)
    awk -v w="$w" -v t="$TARGET" -v q="$qps" -v cpu="$cpu_ms" -v n="$answers" -v sc="$syscalls" \
        -v k="${kernel:-0}" -v send="$send" -v recv="$recv" -v wait="$wait" -v life="$life" -v dl="$delivery" 'BEGIN {
        us = cpu * 1000 / n
        other = k - send - recv - wait - life
        if (other < 0) other = 0
        row("CPU per answer", 100, us)
        row("  user space", 100 - k, us * (100 - k) / 100)
        row("  kernel: sending (sendmmsg, sendmsg, sendto)", send, us * send / 100)
        row("    of which delivering into the receiver (net_rx_action)", dl, us * dl / 100)
        row("  kernel: receiving (recvmmsg, recvmsg, recvfrom)", recv, us * recv / 100)
        row("  kernel: waiting and waking (epoll_wait, poll, futex)", wait, us * wait / 100)
        row("  kernel: upstream sockets (socket, connect, epoll_ctl, close)", life, us * life / 100)
        row("  kernel: the rest (return to user space, where closed sockets are freed; interrupts)", other, us * other / 100)
        printf "%s | %s | system calls per answer | %.2f | |\n", t, w, sc / n
        printf "%s | %s | answers per resolver CPU-second | %.0f | |\n", t, w, n / (cpu / 1000)
    }
    function row(what, pct, v) { printf "%s | %s | %s | %.2f µs | %.1f %%\n", t, w, what, v, pct }'
}

{
    echo "resolver | workload | where | per answer | share of CPU"
    echo "---|---|---|---|---"
    for w in $WORKLOADS; do profile "$w"; done
} > "$TMP/table.md"
cat "$TMP/table.md"
echo
echo "perf record -e cpu-clock -g over ${PROFILE_SECONDS}s of each workload; kernel $(uname -r), $(nproc) CPUs"
