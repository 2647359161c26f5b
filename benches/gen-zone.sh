#!/usr/bin/env bash
# benches/gen-zone.sh — write the test zone and the dnsperf query files.
#
# Usage: benches/gen-zone.sh DIR [CACHED_NAMES] [MISS_NAMES] [SHORT_NAMES]
#
# Writes into DIR:
#   bench.test.zone  zone `bench.test.`: SOA, NS, `ready` A, h1..hN A, a
#                    wildcard `*.miss.bench.test.` so every miss name resolves,
#                    and two sets of SHORT_NAMES short-TTL names:
#                    n<i>.ttl1to5 (TTL 1..5 s) and n<i>.ttl10to15 (TTL 10..15 s),
#                    the TTL cycling with i
#   cached.txt       dnsperf input cycling over h1..hN.bench.test (N lines)
#   miss.txt         dnsperf input of MISS_NAMES unique names q<i>.miss.bench.test
#   ttl1to5.txt      dnsperf input cycling over n1..nS.ttl1to5.bench.test
#   ttl10to15.txt    dnsperf input cycling over n1..nS.ttl10to15.bench.test
#
# All record data are loopback addresses: a stub resolver never contacts
# them, and if anything ever did, the traffic would stay on this machine.
set -euo pipefail

dir=${1:?usage: gen-zone.sh DIR [CACHED_NAMES] [MISS_NAMES] [SHORT_NAMES]}
cached=${2:-1000}
miss=${3:-2000000}
short=${4:-500}
mkdir -p "$dir"

awk -v n="$cached" -v s="$short" 'BEGIN {
    print "$ORIGIN bench.test."
    print "$TTL 86400"
    print "@      IN SOA ns1.bench.test. hostmaster.bench.test. 1 3600 600 86400 3600"
    print "@      IN NS  ns1.bench.test."
    print "ns1    IN A   127.0.0.1"
    print "ready  IN A   127.0.0.1"
    for (i = 1; i <= n; i++)
        printf "h%d IN A 127.%d.%d.%d\n", i, 1 + int(i / 65536) % 254, int(i / 256) % 256, i % 256
    print "*.miss IN A   127.0.0.2"
    # per-record TTLs: 1..5 s (below the 10 s prefetch threshold) and 10..15 s
    for (i = 1; i <= s; i++)
        printf "n%d.ttl1to5 %d IN A 127.3.%d.%d\n", i, 1 + (i - 1) % 5, int(i / 256) % 256, i % 256
    for (i = 1; i <= s; i++)
        printf "n%d.ttl10to15 %d IN A 127.4.%d.%d\n", i, 10 + (i - 1) % 6, int(i / 256) % 256, i % 256
}' > "$dir/bench.test.zone"

awk -v n="$cached" 'BEGIN { for (i = 1; i <= n; i++) printf "h%d.bench.test A\n", i }' \
    > "$dir/cached.txt"

awk -v n="$miss" 'BEGIN { for (i = 1; i <= n; i++) printf "q%d.miss.bench.test A\n", i }' \
    > "$dir/miss.txt"

for set in ttl1to5 ttl10to15; do
    awk -v n="$short" -v set="$set" 'BEGIN { for (i = 1; i <= n; i++) printf "n%d.%s.bench.test A\n", i, set }' \
        > "$dir/$set.txt"
done
