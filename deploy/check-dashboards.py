#!/usr/bin/env python3
"""Check that every metric the Grafana dashboards query is exported by the gateway.

Usage:
    python3 deploy/check-dashboards.py METRICS_FILE   # METRICS_FILE: Prometheus text, '-' = stdin
    python3 deploy/check-dashboards.py --list         # print the metric names the dashboards use
    options: --dashboards DIR  (default: grafana/dashboards next to this script's parent)

Every `expr` in grafana/dashboards/*.json (panel targets, also inside collapsed rows) and every
template-variable query is scanned for names matching `queuegate_[a-z_]+`; `_bucket`, `_sum` and
`_count` are mapped back to the histogram's base name. A name counts as present when the
metrics file has a sample of it (or of `<name>_bucket`, for a histogram) or a `# HELP`/`# TYPE`
line for it. Exit 0 when all are present, 1 listing the missing ones, 2 on usage errors.
Standard library only.

Example against a running gateway:
    curl -s http://127.0.0.1:8080/metrics > /tmp/metrics.txt
    python3 deploy/check-dashboards.py /tmp/metrics.txt
"""

import json
import re
import sys
from pathlib import Path

NAME = re.compile(r"queuegate_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"


def base_name(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def queries(node):
    """Yield every expr string and template-variable query string in a dashboard JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "templating" and isinstance(value, dict):
                for var in value.get("list", []):
                    q = var.get("query")
                    if isinstance(q, dict):
                        q = q.get("query")
                    if isinstance(q, str):
                        yield q
                    if isinstance(var.get("definition"), str):
                        yield var["definition"]
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def used_names(directory):
    """{base metric name: sorted dashboard file names using it}"""
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        raise SystemExit(f"check-dashboards: no *.json dashboards in {directory}")
    used = {}
    for path in files:
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SystemExit(f"check-dashboards: cannot read {path}: {e}")
        for query in queries(dashboard):
            for name in NAME.findall(query):
                used.setdefault(base_name(name), set()).add(path.name)
    return {name: sorted(files) for name, files in sorted(used.items())}


def exported_names(text):
    """Names present in Prometheus text exposition: sample names and HELP/TYPE names."""
    present = set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                present.add(parts[2])
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if m:
            present.add(m.group(0))
    return present


def is_present(name, present):
    return name in present or f"{name}_bucket" in present


def main(argv):
    args = list(argv)
    directory = DEFAULT_DIR
    if "--dashboards" in args:
        i = args.index("--dashboards")
        if i + 1 >= len(args):
            print("check-dashboards: --dashboards needs a directory", file=sys.stderr)
            return 2
        directory = Path(args[i + 1])
        del args[i : i + 2]
    if "-h" in args or "--help" in args:
        print(__doc__.strip())
        return 0
    used = used_names(directory)
    if "--list" in args:
        for name in used:
            print(name)
        return 0
    if len(args) != 1:
        print("usage: check-dashboards.py METRICS_FILE | --list  [--dashboards DIR]", file=sys.stderr)
        return 2
    source = args[0]
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as e:
        print(f"check-dashboards: cannot read {source}: {e}", file=sys.stderr)
        return 2
    present = exported_names(text)
    missing = {name: files for name, files in used.items() if not is_present(name, present)}
    if missing:
        print(f"{len(missing)} of {len(used)} metrics used by the dashboards are missing from {source}:")
        for name, files in missing.items():
            print(f"  {name}  (used in {', '.join(files)})")
        return 1
    print(f"ok: all {len(used)} metrics used by the dashboards are exported")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
