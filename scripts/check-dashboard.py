#!/usr/bin/env python3
"""Checks a Grafana dashboard's structure as Grafana reads it.

    scripts/check-dashboard.py DASHBOARD.json

Unique panel ids, every panel on the 24-column grid without overlapping another, a non-empty query
in every panel that is not a row, and every $variable / ${variable} defined in the templating list
(or one of Grafana's own: $__rate_interval, $__range, $__interval). Prints the panel count;
exits 1 with the problem otherwise.
"""
import json
import re
import sys


def main():
    d = json.load(open(sys.argv[1]))
    panels = d["panels"]
    ids = [p["id"] for p in panels]
    if len(ids) != len(set(ids)):
        return "duplicate panel ids"
    cells = {}
    for p in panels:
        g = p["gridPos"]
        if g["x"] < 0 or g["w"] <= 0 or g["x"] + g["w"] > 24:
            return "panel %r is off the 24-column grid" % p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    return "panel %r overlaps %r" % (p["title"], cells[(x, y)])
                cells[(x, y)] = p["title"]
        if p["type"] != "row" and not (p.get("targets") and all(t.get("expr", "").strip() for t in p["targets"])):
            return "panel %r has no query" % p["title"]
    defined = {v["name"] for v in d.get("templating", {}).get("list", [])}
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", json.dumps(d)))
    undefined = used - defined - {"__rate_interval", "__range", "__interval"}
    if undefined:
        return "undefined variables: %s" % ", ".join(sorted(undefined))
    print(len(panels))
    return None


if __name__ == "__main__":
    problem = main()
    if problem:
        print(problem)
        sys.exit(1)
