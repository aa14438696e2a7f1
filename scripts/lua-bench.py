#!/usr/bin/env python3
"""Redis time per poll / per join of the waiting room's scripts, without the gateway.

The gateway's load scenarios (scripts/cpu-split.sh) measure a script's cost in Redis together
with everything else on the machine; on a noisy machine the Redis figure moves by a third
between runs. This drives one script straight from a Redis connection, with the batches the
gateway sends (B polls or joins per call, 8 calls pipelined), and reads the time Redis itself
measured running the script (INFO commandstats, `usec` of EVALSHA) around each run. That is
the script's work alone: not the socket reads and writes around it (a fixed cost per call,
whatever the script), and not sampled the way a process's CPU time is (the kernel counts that
in ticks, which over a second or two can be off by a third on this machine). Given two versions of a script it alternates them, so a change is
judged by a same-run ratio of medians.

    scripts/lua-bench.py status                         # lua/status.lua
    git show HEAD~1:lua/status.lua > /tmp/old.lua
    scripts/lua-bench.py status /tmp/old.lua lua/status.lua --rounds 5

`status`: a line of 100,000 waiting places; each call asks for 30 random places (not marked,
the common case). `join`: each call joins 30 new users after the sale's start. `scan`: a line
of 300,000 places with their marks; each call is one chunk of the idle scan (--batch places,
default 1,000), every place fresh, or with --gone every place idle (a long line whose fans have
all left), so each chunk removes its whole window. `tick`: a line of fresh places; each call is
a tick that admits --batch of them (default 1,000) and lets the previous tick's admissions
expire (an admission of 0 s), so the figure is per place admitted and expired. Keys live under
a prefix of their own and are deleted afterwards. Talks to 127.0.0.1:6379 only.
"""
import argparse
import random
import socket
import statistics
import sys
import time
import uuid


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind in b"+:":
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read()

    def evalsha_usec(self):
        """Microseconds Redis has spent executing EVALSHA calls (its own clock around each)."""
        info = self.call("INFO", "commandstats").decode()
        for line in info.split("\r\n"):
            if line.startswith("cmdstat_evalsha:"):
                fields = dict(f.split("=", 1) for f in line.split(":", 1)[1].split(","))
                return float(fields["usec"])
        return 0.0

    def delete_prefix(self, prefix):
        cursor = b"0"
        while True:
            cursor, keys = self.call("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 1000)
            if keys:
                self.call("DEL", *keys)
            if cursor == b"0":
                return


PIPELINE = 8


def run_status(r, sha, prefix, batch, calls, rng, counted, places=100_000):
    keys = [prefix + k for k in ("w", "seen:", "a", "as", "st", "set")]
    # Seqs as join.lua numbers them: counting up from the time in microseconds (16 digits;
    # how long a number's text is matters to Redis, which formats every score it hands out).
    base = 1_796_000_000_000_000
    if int(r.call("EXISTS", keys[0])) == 0:
        for i in range(0, places, 1000):
            args = []
            for u in range(i, min(i + 1000, places)):
                args += [base + u, f"u{u}"]
            r.call("ZADD", keys[0], *args)
    # status.lua takes: idle limit, how many pairs are marked (none here), then (user, seq).
    # Versions before c85ac9a's successor took no count (a negative seq meant "mark").
    # Enough different calls that the places asked for spread over the whole line (a real
    # line's polls come from everyone in it, so Redis's memory caches help little).
    requests = []
    for _ in range(places // batch):
        args = ["EVALSHA", sha, len(keys), *keys, 60] + ([0] if counted else [])
        for _ in range(batch):
            u = rng.randrange(places)
            args += [f"u{u}", base + u]
        requests.append(r.encode(*args))
    return drive(r, requests, calls) / (calls * batch)


def run_join(r, sha, prefix, batch, calls, rng):
    keys = [prefix + k for k in ("seq", "epoch", "w", "seen:", "a", "as", "st", "end", "set")]
    # A line has a sale start in its settings from its creation on (0 = none, as here).
    r.call("HSET", keys[-1], "sale_start_ms", 0)
    user = int(r.call("INCRBY", prefix + "users", calls * batch)) - calls * batch
    requests = []
    for _ in range(calls):
        args = ["EVALSHA", sha, len(keys), *keys, uuid.uuid4().hex]
        for _ in range(batch):
            user += 1
            args += [user, 0, "", rng.randrange(1, 1 << 50)]
        requests.append(r.encode(*args))
    return drive(r, requests, calls) / (calls * batch)


def fill_line(r, waiting, seen, places, mark):
    """A line of `places` places numbered as join.lua numbers them, each with its last-seen
    mark (seconds) in its bucket; returns the first seq."""
    base = 1_796_000_000_000_000
    for i in range(0, places, 1024):
        seqs = range(base + i, base + min(i + 1024, places))
        sent = [r.encode("ZADD", waiting, *[x for s in seqs for x in (s, f"u{s - base}")])]
        buckets = {}
        for s in seqs:
            buckets.setdefault(s // 128, []).extend([s % 128, mark])
        sent += [r.encode("HSET", seen + str(b), *f) for b, f in buckets.items()]
        r.sock.sendall(b"".join(sent))
        for _ in sent:
            r.read()
    return base


def run_scan(r, sha, prefix, batch, calls, gone, places=300_000):
    keys = [prefix + k for k in ("w", "seen:", "st", "set")]
    r.call("HSET", keys[3], "sale_start_ms", 0)
    fill_line(r, keys[0], keys[1], places, int(time.time()) - (3600 if gone else 0))
    requests = [r.encode("EVALSHA", sha, len(keys), *keys, 120, batch)]
    cost = drive(r, requests, calls) / (calls * batch)
    r.delete_prefix(prefix)
    return cost


def run_tick(r, sha, prefix, batch, calls):
    keys = [prefix + k for k in ("w", "seen:", "a", "as", "st", "set", "end", "seq", "clock", "waits:")]
    places = batch * (calls + 1)
    base = fill_line(r, keys[0], keys[1], places, int(time.time()))
    # The arrival clock as join.lua's line would have it: an entry every 5 s of a 10-minute rush.
    now_ms = int(time.time() * 1000)
    r.call("SET", keys[7], base + places)
    r.call("ZADD", keys[8], *[x for j in range(120) for x in (base + places * j // 120, now_ms - 600_000 + 5_000 * j)])
    r.call("HSET", keys[5], "admit_per_tick", batch, "tick_ms", 1000, "max_active", 10_000_000,
           "access_ttl_secs", 0, "sale_start_ms", 0)
    usec = 0.0
    for n in range(calls + 1):
        r.call("HDEL", keys[4], "last_tick_ms")  # a new tick period every call
        before = r.evalsha_usec()
        reply = r.call("EVALSHA", sha, len(keys), *keys, 100, 1000, 1000, 60, 120)
        if int(reply[0]) != 1 or int(reply[1]) != batch:
            raise RuntimeError(f"tick admitted {reply[1]} of {batch}")
        if n > 0:  # the first call has nothing to expire yet
            usec += r.evalsha_usec() - before
    r.delete_prefix(prefix)
    return usec / 1e6 / (calls * batch)


def drive(r, requests, calls):
    """Sends `calls` calls, PIPELINE at a time; returns the seconds Redis spent running them."""
    before = r.evalsha_usec()
    sent = 0
    while sent < calls:
        n = min(PIPELINE, calls - sent)
        r.sock.sendall(b"".join(requests[(sent + j) % len(requests)] for j in range(n)))
        for _ in range(n):
            r.read()
        sent += n
    return (r.evalsha_usec() - before) / 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("script", choices=["status", "join", "scan", "tick"])
    p.add_argument("files", nargs="*", help="versions of the script to compare (default: lua/<script>.lua)")
    p.add_argument("--batch", type=int, default=0, help="polls or joins per call (default 30), places per scan chunk or tick (default 1,000)")
    p.add_argument("--calls", type=int, default=0, help="calls per run (default 20,000 status, 5,000 join, 100 scan, 20 tick)")
    p.add_argument("--gone", action="store_true", help="scan: every place idle")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int, default=6379)
    a = p.parse_args()
    files = a.files or [f"lua/{a.script}.lua"]
    calls = a.calls or {"status": 20_000, "join": 5_000, "scan": 100, "tick": 20}[a.script]
    a.batch = a.batch or (1_000 if a.script in ("scan", "tick") else 30)
    r = Redis(a.port)
    prefix = f"qgluabench{uuid.uuid4().hex[:8]}:"
    texts = [open(f).read() for f in files]
    shas = [r.call("SCRIPT", "LOAD", t).decode() for t in texts]
    counted = {f: "how many of the pairs" in t for f, t in zip(files, texts)}
    results = {f: [] for f in files}
    unit = {"scan": "place scanned", "tick": "place admitted and expired"}.get(a.script, a.script)
    try:
        for rnd in range(a.rounds):
            for f, sha in zip(files, shas):
                rng = random.Random(rnd)
                if a.script == "status":
                    cost = run_status(r, sha, prefix + "s:", a.batch, calls, rng, counted[f])
                elif a.script == "scan":
                    cost = run_scan(r, sha, f"{prefix}c{rnd}:", a.batch, calls, a.gone)
                elif a.script == "tick":
                    cost = run_tick(r, sha, f"{prefix}t{rnd}:", a.batch, calls)
                else:
                    cost = run_join(r, sha, f"{prefix}j{rnd}:{len(results[f])}:", a.batch, calls, rng)
                results[f].append(cost * 1e6)
                print(f"round {rnd + 1}  {f}: {cost * 1e6:.2f} µs in Redis per {unit}", flush=True)
    finally:
        r.delete_prefix(prefix)
    medians = {f: statistics.median(v) for f, v in results.items()}
    for f in files:
        print(f"median  {f}: {medians[f]:.2f} µs per {unit} ({a.batch} per call, {calls} calls x {a.rounds})")
    if len(files) == 2:
        print(f"ratio   {files[1]} / {files[0]}: {medians[files[1]] / medians[files[0]]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
