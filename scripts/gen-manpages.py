#!/usr/bin/env python3
"""Man pages for mcrelay and every visible subcommand, from `mcrelay --experimental-dump-help`.

    scripts/gen-manpages.py MCRELAY_BINARY OUT_DIR [--section 8] [--date YYYY-MM-DD]

Writes OUT_DIR/mcrelay.8, OUT_DIR/mcrelay-daemon.8, OUT_DIR/mcrelay-rule-add.8, ... (one page per
command the help shows; hidden ones such as `worker` and `help` get none) and prints their names.
The dump is swift-argument-parser's own description of the command tree (the one its
generate-manual plugin reads), so the pages always match the binary. The plugin itself (it works
offline) is not used: it rebuilds the whole package in release mode without --static-swift-stdlib,
which doubles the cost of `make deb`, and names its pages mcrelay.rule.add.8 (not mcrelay-rule-add).
Exits 1 if the binary fails or its output is not the expected JSON.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys


def roff(text):
    """Escapes text for a roff body line (backslashes, leading dots and quotes, hyphens)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def paragraphs(text):
    """A discussion as roff paragraphs: blank lines separate paragraphs, other newlines are kept."""
    out = []
    for para in text.strip().split("\n\n"):
        para = para.strip("\n")
        if not para:
            continue
        out.append(".PP")
        body = [roff(line) if line.strip() else "" for line in para.split("\n")]
        out.append("\n.br\n".join(line for line in body if line))
    return out


def flag_names(arg):
    names = []
    for name in arg.get("names", []):
        if name["kind"] == "short":
            names.append("\\fB\\-%s\\fR" % name["name"])
        elif name["kind"] == "longWithSingleDash":
            names.append("\\fB\\-%s\\fR" % roff(name["name"]))
        else:
            names.append("\\fB\\-\\-%s\\fR" % roff(name["name"]))
    return names


def value(arg):
    return "\\fI%s\\fR" % roff(arg.get("valueName") or arg.get("preferredName", {}).get("name", "value"))


def synopsis_item(arg):
    if arg["kind"] == "positional":
        item = value(arg)
    else:
        item = flag_names(arg)[0] if flag_names(arg) else ""
        if arg["kind"] == "option":
            item += " " + value(arg)
    if arg.get("isRepeating"):
        item += " ..."
    return "[%s]" % item if arg.get("isOptional") else item


def page_name(path):
    return "-".join(path)


def render(command, path, section, date, version, children, parent):
    name = page_name(path)
    visible_args = [a for a in command.get("arguments", []) if a.get("shouldDisplay", True)]
    lines = [
        '.TH "%s" "%d" "%s" "%s" "mcrelay manual"' % (name.upper(), section, date, version),
        ".SH NAME",
        "%s \\- %s" % (roff(name), roff(command.get("abstract", "") or " ".join(path))),
        ".SH SYNOPSIS",
        ".B %s" % roff(" ".join(path)),
    ]
    if children:
        lines.append("\\fIsubcommand\\fR ...")
    for arg in visible_args:
        lines.append(synopsis_item(arg))
    lines.append(".SH DESCRIPTION")
    abstract = command.get("abstract", "")
    lines.append(roff(abstract) if abstract else roff(" ".join(path)))
    lines += paragraphs(command.get("discussion", ""))
    if visible_args:
        lines.append(".SH OPTIONS")
        for arg in visible_args:
            lines.append(".TP")
            if arg["kind"] == "positional":
                head = value(arg)
            else:
                head = ", ".join(flag_names(arg))
                if arg["kind"] == "option":
                    head += " " + value(arg)
            lines.append(head)
            text = arg.get("abstract", "")
            if arg.get("defaultValue") not in (None, ""):
                text += (" " if text else "") + "(default: %s)" % arg["defaultValue"]
            if arg.get("isRepeating") and "repeat" not in text:
                text += (" " if text else "") + "(may be repeated)"
            lines.append(roff(text) if text else "\\&")
            discussion = arg.get("discussion")
            if isinstance(discussion, str) and discussion:
                lines.append(".IP")
                lines.append(roff(discussion))
    if children:
        lines.append(".SH SUBCOMMANDS")
        for child_path, child in children:
            lines.append(".TP")
            lines.append("\\fB%s\\fR(%d)" % (roff(page_name(child_path)), section))
            lines.append(roff(child.get("abstract", "") or " ".join(child_path)))
    if len(path) == 1:
        lines += [
            ".SH FILES",
            ".TP", "\\fI/etc/mcrelay/config.json\\fR",
            roff("The rules the systemd unit starts with (mcrelay daemon --config; SIGHUP or systemctl reload mcrelay re-reads it)."),
            ".TP", "\\fI/run/mcrelay/control.sock\\fR",
            roff("The control socket (mode 0660, group mcrelay) that mcrelay rule, stats and record use."),
            ".TP", "\\fI/usr/share/mcrelay/grafana/mcrelay\\-dashboard.json\\fR",
            roff("A Grafana dashboard for the metrics of mcrelay daemon --metrics."),
            ".TP", "\\fI/usr/share/mcrelay/prometheus/mcrelay\\-alerts.yml\\fR",
            roff("Prometheus alerting rules for the same metrics."),
            ".TP", "\\fI/usr/share/doc/mcrelay/README.md\\fR",
            roff("The full documentation: rules, IGMP membership, metrics, the simulator and the flight recorder."),
        ]
    lines.append(".SH SEE ALSO")
    see = []
    if parent:
        see.append(parent)
    see += [page_name(p) for p, _ in children]
    if len(path) == 1:
        see.append("systemctl")
    refs = []
    for other in see:
        refs.append(".BR %s (%d)%s" % (roff(other), 1 if other == "systemctl" else section, ","))
    if refs:
        refs[-1] = refs[-1][:-1]
        lines += refs
    lines.append(".SH VERSION")
    lines.append(roff(version))
    return name, "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("out_dir")
    parser.add_argument("--section", type=int, default=8)
    parser.add_argument("--date", default=None, help="page date (default: SOURCE_DATE_EPOCH or today)")
    args = parser.parse_args()

    date = args.date
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else datetime.datetime.now(datetime.timezone.utc)
        date = when.strftime("%Y-%m-%d")
    try:
        dump = subprocess.run([args.binary, "--experimental-dump-help"], check=True, capture_output=True, timeout=60).stdout
        version = subprocess.run([args.binary, "--version"], check=True, capture_output=True, text=True, timeout=60).stdout.strip()
        root = json.loads(dump)["command"]
    except (subprocess.SubprocessError, OSError, ValueError, KeyError) as error:
        print("gen-manpages: cannot read the command tree from %s: %s" % (args.binary, error), file=sys.stderr)
        return 1

    os.makedirs(args.out_dir, exist_ok=True)
    written = []

    def visible(command):
        return command.get("shouldDisplay", True) and command.get("commandName") != "help"

    def walk(command, path, parent):
        children = [(path + [c["commandName"]], c) for c in command.get("subcommands", []) if visible(c)]
        name, text = render(command, path, args.section, date, version, children, parent)
        with open(os.path.join(args.out_dir, "%s.%d" % (name, args.section)), "w") as f:
            f.write(text)
        written.append("%s.%d" % (name, args.section))
        for child_path, child in children:
            walk(child, child_path, name)

    walk(root, [root.get("commandName", "mcrelay")], None)
    for name in written:
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
