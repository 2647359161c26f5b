#!/usr/bin/env python3
"""Writes the DNS seed inputs of the fuzz targets (run from anywhere).

query_path: client queries, with and without EDNS and DO, for names the
target's resolver answers locally, from its seeded cache, or misses.
upstream_reply: a control header (see fuzz_targets/upstream_reply.rs) then an
upstream reply: positive, NXDOMAIN with SOA, a CNAME chain, SERVFAIL.
The text seeds (config, hosts, resolv_conf) are kept as written.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
A, AAAA, CNAME, SOA, MX, TXT, PTR, ANY, OPT = 1, 28, 5, 6, 15, 16, 12, 255, 41


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(id, flags, qd, an, ns, ar):
    return struct.pack(">HHHHHH", id, flags, qd, an, ns, ar)


def opt(payload=1232, do=False):
    return b"\0" + struct.pack(">HHIH", OPT, payload, 0x8000 if do else 0, 0)


def query(id, qname, qtype, edns=None):
    flags = 0x0100  # RD
    body = name(qname) + struct.pack(">HH", qtype, 1)
    if edns is None:
        return header(id, flags, 1, 0, 0, 0) + body
    payload, do = edns
    return header(id, flags, 1, 0, 0, 1) + body + opt(payload, do)


def rr(owner, rtype, ttl, rdata):
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


QPTR = b"\xc0\x0c"  # the question's name


def reply(id, qname, qtype, rcode, answers=(), authority=(), edns=True):
    flags = 0x8180 | rcode  # QR RD RA
    ar = 1 if edns else 0
    out = header(id, flags, 1, len(answers), len(authority), ar)
    out += name(qname) + struct.pack(">HH", qtype, 1)
    out += b"".join(answers) + b"".join(authority)
    return out + (opt() if edns else b"")


def soa(zone):
    rdata = name("ns." + zone) + name("hostmaster." + zone)
    rdata += struct.pack(">IIIII", 2024010101, 3600, 600, 86400, 300)
    return rr(name(zone), SOA, 900, rdata)


def write(target, file, data):
    path = os.path.join(HERE, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, file), "wb") as f:
        f.write(data)


queries = {
    "a-plain": query(0x1234, "example.com", A),
    "a-edns": query(0x2345, "cached.test", A, (1232, False)),
    "a-edns-do": query(0x3456, "cached.test", A, (4096, True)),
    "aaaa-small-edns": query(0x4567, "cached.test", AAAA, (512, False)),
    "mixed-case": query(0x5678, "CaChEd.TeSt", A),
    "big-udp": query(0x6789, "big.test", A),
    "big-edns": query(0x789A, "big.test", A, (1232, True)),
    "nxdomain": query(0x89AB, "nx.test", A, (1232, False)),
    "cname-chain": query(0x9ABC, "alias.test", A),
    "stale": query(0xABCD, "stale.test", A, (1232, False)),
    "prefetch": query(0xBCDE, "prefetch.test", A),
    "failure": query(0xCDEF, "fail.test", A, (1232, False)),
    "local-static": query(0x0101, "nas.home.arpa", A),
    "local-cname": query(0x0202, "www.home.arpa", A, (1232, True)),
    "local-mx": query(0x0303, "home.arpa", MX),
    "hosts-aaaa": query(0x0404, "printer.home.arpa", AAAA),
    "hosts-ptr": query(0x0505, "10.2.0.192.in-addr.arpa", PTR),
    "localhost": query(0x0606, "localhost", A),
    "any": query(0x0707, "example.com", ANY),
    "forward-zone": query(0x0808, "db.corp.example", A),
}
# EDNS version 1: BADVERS.
badvers = bytearray(query(0x0909, "example.com", A, (1232, False)))
badvers[-5] = 1  # the OPT TTL's version byte
queries["badvers"] = bytes(badvers)
queries["notimp"] = bytes([0x0A, 0x0A, 0x28, 0x00]) + query(0, "example.com", A)[4:]
for file, data in queries.items():
    write("query_path", file, data)

# upstream_reply: control bytes [question selector and flags, payload/16, id high, id low / age].
q = lambda name_, t: name(name_) + struct.pack(">HH", t, 1)
replies = {
    "positive": (0x00, reply(0xBEEF, "example.com", A, 0, [rr(QPTR, A, 300, bytes([192, 0, 2, 1])), rr(QPTR, A, 60, bytes([192, 0, 2, 2]))])),
    "positive-do": (0x28, reply(0xBEEF, "example.com", A, 0, [rr(QPTR, A, 300, bytes([192, 0, 2, 1]))])),
    "aaaa": (0x01, reply(0xBEEF, "www.example.com", AAAA, 0, [rr(QPTR, AAAA, 300, bytes(15) + b"\x01")])),
    "nxdomain-soa": (0x22, reply(0xBEEF, "nx.test", A, 3, [], [soa("test")])),
    "nodata-soa": (0x07, reply(0xBEEF, "example.org", MX, 0, [], [soa("example.org")])),
    "cname-chain": (0x03, reply(0xBEEF, "alias.test", A, 0, [
        rr(QPTR, CNAME, 600, name("middle.test")),
        rr(name("middle.test"), CNAME, 300, name("target.test")),
        rr(name("target.test"), A, 60, bytes([198, 51, 100, 7])),
    ])),
    "cname-nxdomain": (0x23, reply(0xBEEF, "alias.test", A, 3, [rr(QPTR, CNAME, 20, name("gone.test"))], [soa("test")])),
    "servfail": (0x00, reply(0xBEEF, "example.com", A, 2)),
    "no-opt": (0x00, reply(0xBEEF, "example.com", A, 0, [rr(QPTR, A, 300, bytes([192, 0, 2, 1]))], edns=False)),
    "txt-own-question": (0x06, reply(0xBEEF, "Txt.Example.Net", TXT, 0, [rr(QPTR, TXT, 3600, b"\x05hello")])),
}
# Asked HTTPS (65, 0x0041, control 0x05), the reply is for type 97 (0x0061):
# not our question, though the bytes differ only in ASCII case.
https_case = bytearray(reply(0xBEEF, "example.com", A, 0, [rr(QPTR, A, 300, bytes([192, 0, 2, 1]))]))
https_case[12 + len(name("example.com")) + 1] = 0x61
replies["https-qtype-case"] = (0x05, bytes(https_case))
for file, (control, data) in replies.items():
    write("upstream_reply", file, bytes([control, 0x4C, 0x12, 0x34]) + data)
