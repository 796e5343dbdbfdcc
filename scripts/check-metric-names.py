#!/usr/bin/env python3
"""Checks that the Grafana dashboard and the Prometheus rules use only metrics and labels that a
running daemon exposes.

    scripts/check-metric-names.py SCRAPE.txt FILE...

SCRAPE.txt is a /metrics exposition of `mcrelay daemon --metrics` (text format 0.0.4). Every
`mcrelay_*` word anywhere in each FILE (expressions, legends, descriptions) must be a metric name
of the scrape, and every label a FILE's PromQL groups, joins or matches on (by/without/on/ignoring
(...), {label=...} in expressions, {{label}} in legends, $labels.label in annotations) must be a
label of some mcrelay metric or one that Prometheus adds (instance, job). Prints one line per file
and a final `metric-names: N passed, M failed`; exits 1 on any failure, 2 on bad input.
"""
import json
import re
import sys

PROMETHEUS_LABELS = {"instance", "job", "le", "quantile", "__name__"}
PROMQL_WORDS = {"bool", "offset"}


def parse_scrape(text):
    names, labels = set(), set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+", line)
        if not match:
            raise ValueError("malformed exposition line: %r" % line)
        names.add(match.group(1))
        for label in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(3) or ""):
            labels.add(label)
    return names, labels


def expressions(path, text):
    """The PromQL of a dashboard (every "expr" and templating query) or of a rules file."""
    if path.endswith(".json"):
        found = []

        def walk(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in ("expr", "definition") and isinstance(value, str):
                        found.append(value)
                    elif key == "query" and isinstance(value, str):
                        found.append(value)
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(json.loads(text))
        return found
    # A rules file: `expr: ...` on one line or a `expr: |` block (indented lines after it).
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = re.match(r"(\s*)expr:\s*(.*)$", lines[i])
        if match:
            indent, rest = len(match.group(1)), match.group(2).strip()
            if rest in ("|", ">", "|-", ">-"):
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i])
                    i += 1
                found.append("\n".join(block))
                continue
            found.append(rest.strip("'\""))
        i += 1
    return found


def labels_used(text, exprs):
    used = set()
    for expr in exprs:
        for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
            used.update(x.strip() for x in group.split(",") if x.strip())
        for matcher in re.findall(r"\{([^{}]*)\}", expr):
            used.update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"', matcher))
        # label_values(metric, label)
        used.update(re.findall(r"label_values\([^,]*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", expr))
    used.update(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", text))  # legendFormat
    used.update(re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text))  # alert annotations
    return used - PROMQL_WORDS


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        names, labels = parse_scrape(open(sys.argv[1]).read())
    except (OSError, ValueError) as error:
        print("metric-names: cannot read the scrape: %s" % error, file=sys.stderr)
        return 2
    if not any(n.startswith("mcrelay_") for n in names):
        print("metric-names: the scrape has no mcrelay_ metric", file=sys.stderr)
        return 2
    passed = failed = 0
    for path in sys.argv[2:]:
        try:
            text = open(path).read()
            exprs = expressions(path, text)
        except (OSError, ValueError) as error:
            print("metric-names: cannot read %s: %s" % (path, error), file=sys.stderr)
            return 2
        if not exprs:
            print("metric-names: %s has no expression" % path, file=sys.stderr)
            return 2
        used = set(re.findall(r"\bmcrelay_[a-z0-9_]+\b", text))
        missing = sorted(used - names)
        unknown_labels = sorted(labels_used(text, exprs) - labels - PROMETHEUS_LABELS)
        if missing or unknown_labels or not used:
            failed += 1
            print("FAIL %s: %d metric names, not in the scrape: %s; labels not in the scrape: %s"
                  % (path, len(used), ", ".join(missing) or "-", ", ".join(unknown_labels) or "-"))
        else:
            passed += 1
            print("ok   %s: %d expressions, all %d metric names (%s) and their labels are in the scrape"
                  % (path, len(exprs), len(used), ", ".join(sorted(used))))
    print("metric-names: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
