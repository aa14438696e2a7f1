#!/usr/bin/env python3
"""Helpers for scripts/stack.sh and scripts/stack-test.sh (Python 3 standard library + PyYAML).

  compose-env SERVICE [--sub FROM=TO ...]          environment of a compose service, KEY=VALUE lines
  compose-command SERVICE [--sub ...] [--path ...]  its command, one argument per line
  render SRC DST [REGEX REPLACEMENT COUNT]...        copy a config file, replacing only the given
                                                     patterns, each exactly COUNT times
  dashboards --prom URL [--mode-off NAMES] [--range D] [--rate-interval D] [--dashboards DIR]
                                                     every PromQL expression of grafana/dashboards
                                                     sent to Prometheus; a table; exit 1 when any
                                                     is empty (panels of a mode the stack does not run are listed apart)
  listings --addr HOST:PORT --concert ID [--requests N] [--connections N]
                                                     a listings-only load: one admitted fan, then
                                                     N seat-map reads
  alerts --prom URL [--alertmanager URL]             active alerts, one per line

compose-env / compose-command read docker-compose.yml the way compose does for these simple
cases: `${VAR:-default}` and `${VAR}` are taken from the environment, YAML merge keys (`<<`)
are followed. `--sub FROM=TO` replaces the substring FROM (a compose host:port) by TO in every
value; `--path FROM=TO` replaces an option value (`--opt=FROM`) or a whole argument equal to FROM.
"""

import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def die(msg, code=2):
    print(f"stack_helper: {msg}", file=sys.stderr)
    sys.exit(code)


def pairs(args, flag):
    """Values of repeated `flag FROM=TO` options, as (FROM, TO)."""
    out = []
    it = iter(range(len(args)))
    for i in it:
        if args[i] == flag:
            if i + 1 >= len(args) or "=" not in args[i + 1]:
                die(f"{flag} needs FROM=TO")
            a, b = args[i + 1].split("=", 1)
            out.append((a, b))
            next(it, None)
    return out


def option(args, name, default=None):
    if name in args:
        i = args.index(name)
        if i + 1 < len(args):
            return args[i + 1]
        die(f"{name} needs a value")
    return default


# ------------------------------------------------------------------------- compose


def compose():
    try:
        import yaml
    except ImportError:
        die("PyYAML is missing (Debian: apt-get install python3-yaml)")
    with open(ROOT / "docker-compose.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def interpolate(value):
    def one(m):
        name, default = m.group(1), m.group(2)
        got = os.environ.get(name)
        if got:
            return got
        return default if default is not None else ""

    return VAR.sub(one, str(value))


def service(name):
    services = compose().get("services", {})
    if name not in services:
        die(f"no service {name} in docker-compose.yml")
    return services[name]


def substitute(value, subs):
    for a, b in subs:
        value = value.replace(a, b)
    return value


def cmd_compose_env(args):
    svc = service(args[0])
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, os.environ.get(e, "")) for e in env)
    subs = pairs(args, "--sub")
    for key, value in env.items():
        value = substitute(interpolate("" if value is None else value), subs)
        if "\n" in value:
            die(f"{key}: multi-line values are not supported")
        print(f"{key}={value}")


def cmd_compose_command(args):
    svc = service(args[0])
    command = svc.get("command") or []
    if isinstance(command, str):
        die("string commands are not supported; use a list")
    subs, paths = pairs(args, "--sub"), dict(pairs(args, "--path"))
    for arg in command:
        arg = substitute(interpolate(arg), subs)
        if arg in paths:
            arg = paths[arg]
        elif arg.startswith("--") and "=" in arg:
            k, v = arg.split("=", 1)
            if v in paths:
                arg = f"{k}={paths[v]}"
        print(arg)


def cmd_render(args):
    if len(args) < 2 or (len(args) - 2) % 3:
        die("render SRC DST [REGEX REPLACEMENT COUNT]...")
    src, dst = Path(args[0]), Path(args[1])
    text = src.read_text(encoding="utf-8")
    for i in range(2, len(args), 3):
        pattern, replacement, count = args[i], args[i + 1], int(args[i + 2])
        text, n = re.subn(pattern, replacement, text, flags=re.M)
        if n != count:
            die(f"{src}: pattern {pattern!r} matched {n} times, expected {count}")
    dst.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------- Prometheus


def prom_query(prom, expr, timeout=15):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except ValueError:
            raise RuntimeError(f"HTTP {e.code}") from e
    if body.get("status") != "success":
        raise RuntimeError(body.get("error", body))
    return body["data"]


def metric_names(expr):
    names = set()
    for n in re.findall(r"\b(queuegate_[a-z_]+|up)\b", expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix) and not n.endswith("_total"):
                n = n[: -len(suffix)]
        names.add(n)
    return names


def dashboard_queries(directory):
    """(dashboard title, panel title, expr, variables) for every panel target."""
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        variables = {}
        for v in d.get("templating", {}).get("list", []):
            variables[v["name"]] = v

        def walk(panels):
            for p in panels:
                for t in p.get("targets", []):
                    if t.get("expr") and not t.get("hide"):
                        out.append((path.stem, p.get("title", "?"), t["expr"], variables))
                walk(p.get("panels", []))

        walk(d.get("panels", []))
    return out


def variable_value(var):
    """What Grafana puts in place of a template variable on a dashboard's default view."""
    current = var.get("current") or {}
    value = current.get("value")
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else "|".join(value)
    if value in (None, "", "$__all") and var.get("includeAll"):
        return var.get("allValue") or ".*"
    return value or ".*"


def cmd_dashboards(args):
    prom = option(args, "--prom", "http://127.0.0.1:9090")
    rng = option(args, "--range", "10m")
    rate_interval = option(args, "--rate-interval", "1m")
    mode_off = set(filter(None, option(args, "--mode-off", "").split(",")))
    directory = option(args, "--dashboards", str(ROOT / "grafana" / "dashboards"))
    exported = {r["metric"]["__name__"] for r in
                prom_query(prom, 'group by (__name__) ({__name__=~"queuegate_.+"})')["result"]}
    rows, empty, waiting = [], [], []
    for dash, panel, expr, variables in dashboard_queries(directory):
        q = expr
        for name, var in variables.items():
            q = q.replace(f"${{{name}}}", variable_value(var)).replace(f"${name}", variable_value(var))
        q = (q.replace("$__rate_interval", rate_interval).replace("$__range", rng)
             .replace("$__interval", "15s"))
        try:
            data = prom_query(prom, q)
            n = len(data["result"]) if data["resultType"] in ("vector", "matrix") else 1
            err = None
        except Exception as e:  # noqa: BLE001 - reported in the table
            n, err = 0, str(e)
        missing = {m for m in metric_names(q) if m != "up"} - {
            b for e in exported for b in (e, re.sub(r"_(bucket|sum|count)$", "", e))
        }
        state = "ok"
        if err:
            state = "ERROR"
        elif n == 0:
            state = "MODE OFF" if missing and missing <= mode_off else "EMPTY"
        rows.append((dash, panel, q, n, state, err, missing))
        if state in ("EMPTY", "ERROR"):
            empty.append(rows[-1])
        elif state == "MODE OFF":
            waiting.append(rows[-1])
    width = max(len(r[1]) for r in rows)
    print(f"{'dashboard':<13} {'panel':<{width}} {'series':>6}  {'state':<14}  expression")
    for dash, panel, q, n, state, err, _ in rows:
        short = q if len(q) <= 110 else q[:107] + "..."
        print(f"{dash:<13} {panel:<{width}} {n:>6}  {state:<14}  {short}")
    print(f"\n{len(rows)} queries: {len(rows) - len(empty) - len(waiting)} with data, "
          f"{len(empty)} empty or failing, {len(waiting)} for a mode this stack does not run")
    for dash, panel, q, _, state, err, missing in waiting:
        print(f"  mode off: {dash} / {panel}: {', '.join(sorted(missing))}")
    for dash, panel, q, _, state, err, missing in empty:
        why = err or (f"missing metrics: {', '.join(sorted(missing))}" if missing else "no series")
        print(f"  {state}: {dash} / {panel}: {q}  ({why})")
    return 1 if empty else 0


def cmd_alerts(args):
    prom = option(args, "--prom", "http://127.0.0.1:9090")
    with urllib.request.urlopen(f"{prom}/api/v1/alerts", timeout=10) as r:
        alerts = json.load(r)["data"]["alerts"]
    for a in alerts:
        labels = a["labels"]
        extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items())
                         if k not in ("alertname", "severity"))
        print(f"{a['state']}\t{labels.get('alertname')}\t{labels.get('severity', '')}\t"
              f"{a.get('activeAt', '')}\t{extra}")
    am = option(args, "--alertmanager")
    if am:
        with urllib.request.urlopen(f"{am}/api/v2/alerts", timeout=10) as r:
            for a in json.load(r):
                labels = a["labels"]
                extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items())
                                 if k not in ("alertname", "severity"))
                print(f"alertmanager:{a['status']['state']}\t{labels.get('alertname')}\t"
                      f"{labels.get('severity', '')}\t{a.get('startsAt', '')}\t{extra}")
    return 0


# ------------------------------------------------------------------------- listings load


class Client:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method, path, token=None, body=None):
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return r.status, parsed


def listing_setup(addr, concert):
    """One fan, admitted to the concert: (access token, schedule ids, queue token)."""
    c = Client(addr)
    s, u = c.call("POST", "/v1/users", body={"name": "listings reader"})
    if s != 201:
        die(f"create user: {s} {u}", 1)
    s, q = c.call("POST", "/v1/queue", token=u["user_token"], body={"concert_id": concert})
    if s not in (200, 201):
        die(f"join: {s} {q}", 1)
    deadline = time.monotonic() + 60
    while True:
        s, st = c.call("GET", "/v1/queue/status", token=q["queue_token"])
        if s == 200 and st.get("status") == "admitted":
            access = st["access_token"]
            break
        if s != 200 or time.monotonic() > deadline:
            die(f"not admitted: {s} {st}", 1)
        time.sleep(min(st.get("poll_after_ms", 500), 500) / 1000)
    s, sch = c.call("GET", f"/v1/concerts/{concert}/schedules", token=access)
    if s != 200 or not sch.get("schedules"):
        die(f"schedules: {s} {sch}", 1)
    return access, [x["schedule_id"] for x in sch["schedules"]], q["queue_token"]


def cmd_listings(args):
    """Seat-map reads only. With --requests 0: set up (create a fan, get admitted) and print
    {"access", "schedules", "queue_token"} as JSON; pass that to --skip-setup to read without
    any setup traffic in the measured window."""
    addr = option(args, "--addr", "127.0.0.1:8088")
    requests = int(option(args, "--requests", "2000"))
    connections = int(option(args, "--connections", "8"))
    prepared = option(args, "--skip-setup")
    queue_token = None
    if prepared:
        p = json.loads(prepared)
        access, schedules = p["access"], p["schedules"]
    else:
        concert = int(option(args, "--concert") or die("--concert is required"))
        access, schedules, queue_token = listing_setup(addr, concert)
    if requests == 0:
        print(json.dumps({"access": access, "schedules": schedules, "queue_token": queue_token}))
        return 0
    counts, lock, nxt = {}, threading.Lock(), [0]

    def worker():
        cl = Client(addr)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= requests:
                return
            try:
                status, _ = cl.call("GET", f"/v1/schedules/{schedules[i % len(schedules)]}/seats",
                                    token=access)
            except (OSError, http.client.HTTPException):
                status, cl = "transport", Client(addr)
            with lock:
                counts[status] = counts.get(status, 0) + 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    ok = counts.get(200, 0)
    print(json.dumps({"requests": requests, "ok": ok, "statuses": {str(k): v for k, v in counts.items()},
                      "seconds": round(elapsed, 2), "per_second": round(requests / elapsed, 1),
                      "schedules": schedules}))
    return 0 if ok == requests else 1


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    commands = {
        "compose-env": cmd_compose_env,
        "compose-command": cmd_compose_command,
        "render": cmd_render,
        "dashboards": cmd_dashboards,
        "alerts": cmd_alerts,
        "listings": cmd_listings,
    }
    if argv[0] not in commands:
        die(f"unknown command {argv[0]}")
    return commands[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
