#!/usr/bin/env bash
# benches/gen-zone.sh — write the test zone and the dnsperf query files.
#
# Usage: benches/gen-zone.sh DIR [CACHED_NAMES] [MISS_NAMES]
#
# Writes into DIR:
#   bench.test.zone  zone `bench.test.`: SOA, NS, `ready` A, h1..hN A, and a
#                    wildcard `*.miss.bench.test.` so every miss name resolves
#   cached.txt       dnsperf input cycling over h1..hN.bench.test (N lines)
#   miss.txt         dnsperf input of MISS_NAMES unique names q<i>.miss.bench.test
#
# All record data are loopback addresses: a stub resolver never contacts
# them, and if anything ever did, the traffic would stay on this machine.
set -euo pipefail

dir=${1:?usage: gen-zone.sh DIR [CACHED_NAMES] [MISS_NAMES]}
cached=${2:-1000}
miss=${3:-2000000}
mkdir -p "$dir"

awk -v n="$cached" 'BEGIN {
    print "$ORIGIN bench.test."
    print "$TTL 86400"
    print "@      IN SOA ns1.bench.test. hostmaster.bench.test. 1 3600 600 86400 3600"
    print "@      IN NS  ns1.bench.test."
    print "ns1    IN A   127.0.0.1"
    print "ready  IN A   127.0.0.1"
    for (i = 1; i <= n; i++)
        printf "h%d IN A 127.%d.%d.%d\n", i, 1 + int(i / 65536) % 254, int(i / 256) % 256, i % 256
    print "*.miss IN A   127.0.0.2"
}' > "$dir/bench.test.zone"

awk -v n="$cached" 'BEGIN { for (i = 1; i <= n; i++) printf "h%d.bench.test A\n", i }' \
    > "$dir/cached.txt"

awk -v n="$miss" 'BEGIN { for (i = 1; i <= n; i++) printf "q%d.miss.bench.test A\n", i }' \
    > "$dir/miss.txt"
