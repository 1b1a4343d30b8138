#!/usr/bin/env python3
"""lint_tests.py - how a shell test here may pass (tests/README.md).

Scans the integration test scripts and fails (exit 1, a line per finding) when
one of them could report "ok" without checking anything:

  bare-ok      a script calls `ok` itself; only the helpers of tap.sh and
               lib.sh may, each behind a real condition (tap_selftest.sh
               shows that each of them can fail). A test states its condition
               with `check WHAT CMD...`, `require WHAT CMD...` or another
               helper, so that making it unconditional is a visible edit.
  constant     `check`/`require`/`todo` given a command that is always true
               (true, :, /bin/true, test with one non-empty word).
  own-ok       a script defines its own ok()/not_ok()/check() instead of
               sourcing tap.sh.

Usage: lint_tests.py DIR...   (every *.sh in each DIR)
       lint_tests.py --self-test   (the scan finds each kind in planted lines)
"""
import re
import sys
from pathlib import Path

HELPER_FILES = {"tap.sh", "lib.sh"}
CMD_START = r"(?:^|[;&|({)]|\bthen\b|\belse\b|\bdo\b|\belif\b|!)\s*"
BARE_OK = re.compile(CMD_START + r"ok(?:\s|$)")
DEF_OWN = re.compile(r"^\s*(?:function\s+)?(ok|not_ok|check)\s*\(\)")
ASSERT = re.compile(CMD_START + r"(check|require)\s+(\S+)\s+(.*)$")
TODO = re.compile(CMD_START + r"todo\s+(\S+)\s+(\S+)\s+(.*)$")
CONSTANT = re.compile(r"^(?:true|:|/bin/true|/usr/bin/true|test\s+\S+|\[\s+\S+\s+\])(?:\s+#.*|\s*;.*|\s*\|\|.*)?$")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')


def strip(line):
    """The line without comments and with quoted strings emptied."""
    line = STRING.sub('""', line)
    out = []
    for i, c in enumerate(line):
        if c == "#" and (i == 0 or line[i - 1] in " \t;"):
            break
        out.append(c)
    return "".join(out)


def heredoc_ranges(lines):
    """Line numbers inside here-documents (Python or data, not shell)."""
    inside, end = set(), None
    for n, line in enumerate(lines, 1):
        if end is not None:
            if line.strip() == end:
                end = None
            else:
                inside.add(n)
            continue
        m = re.search(r"<<-?\s*(['\"]?)(\w+)\1", line)
        if m:
            end = m.group(2)
    return inside


def logical_lines(text):
    """(first line number, text) of each logical line: a line ending in a
    backslash is joined with the next; here-documents are left out."""
    lines = text.splitlines()
    skip = heredoc_ranges(lines)
    out, buf, first = [], "", None
    for n, line in enumerate(lines, 1):
        if n in skip:
            continue
        if first is None:
            first = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append((first, buf + line))
        buf, first = "", None
    if first is not None:
        out.append((first, buf))
    return out


def scan_text(name, text):
    findings = []
    for n, raw in logical_lines(text):
        line = strip(raw)
        if DEF_OWN.search(line) and name not in HELPER_FILES:
            findings.append((name, n, "own-ok", raw.strip()))
        if BARE_OK.search(line) and name not in HELPER_FILES:
            findings.append((name, n, "bare-ok", raw.strip()))
        m = ASSERT.search(line)
        if m and CONSTANT.match(m.group(3).strip()):
            findings.append((name, n, "constant", raw.strip()))
        m = TODO.search(line)
        if m and CONSTANT.match(m.group(3).strip()):
            findings.append((name, n, "constant", raw.strip()))
    return findings


def self_test():
    planted = {
        "bare-ok": ['ok "the broker runs"', 'start_broker && ok "x"',
                    'if true; then ok "y"; fi', '    else ok "z"',
                    '*/nologin) ok "cannot log in" ;;'],
        "constant": ['check "always holds" true', 'require "always" :',
                     'check "x y" test 1', 'check "x" [ 1 ]',
                     'check "the backlog arrives" \\\n    true',
                     'check "x" true || echo "# diagnostic"',
                     'todo "x" "why" true'],
        "own-ok": ['ok() {', 'check () {'],
    }
    clean = ['check "runs" broker_runs', 'echo "ok $TESTS - $*"',
             '# ok "in a comment"', 'jl \'E("ok")\' "an ok event"',
             'check "x" test "$a" = "$b"', 'not_ok "failed"', 'broken_ok "x"',
             'check "a true story" wait_until 20 inbox_has woonstad "$M1"']
    bad = 0
    for kind, lines in planted.items():
        for line in lines:
            got = [f[2] for f in scan_text("planted.sh", line)]
            if kind not in got:
                print(f"self-test: {kind} not found in: {line}")
                bad += 1
    for line in clean:
        got = scan_text("planted.sh", line)
        if got:
            print(f"self-test: {got[0][2]} reported for a clean line: {line}")
            bad += 1
    print("self-test: %d planted findings, %d clean lines, %s"
          % (sum(map(len, planted.values())), len(clean), "failed" if bad else "all as expected"))
    return 1 if bad else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-3])
        return 2
    findings, files = [], 0
    for d in argv[1:]:
        paths = sorted(Path(d).glob("*.sh"))
        if not paths:
            print(f"lint_tests.py: no *.sh in {d}")
            return 2
        for p in paths:
            files += 1
            findings += scan_text(p.name, p.read_text())
    for name, n, kind, line in findings:
        print(f"{name}:{n}: {kind}: {line}")
    print(f"lint_tests.py: {files} scripts, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
