#!/usr/bin/env python3
"""Every KETEN_LOG call's field template has the shape lib/log.h describes.

The logger flags a template of the wrong shape only when the line is
written (log_error="bad field template"); this finds one at test time, in
every source file of the programs. TAP, one line per folder.

    log_templates.py SOURCE_ROOT
"""
import os
import re
import sys

FOLDERS = ["broker", "client", "keys", "audit", "lib"]
FIELD = r'[A-Za-z0-9_.-]+=("[^"]*"|[^ "]+)'
SHAPE = re.compile(FIELD + "( " + FIELD + ")*")
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def args_of(s, i):
    """The top-level arguments of the call whose '(' ends at i."""
    depth, args, cur, instr = 1, [], "", False
    while depth > 0:
        c = s[i]
        if instr:
            cur += c
            if c == "\\":
                cur += s[i + 1]
                i += 1
            elif c == '"':
                instr = False
        elif c == '"':
            instr = True
            cur += c
        elif c in "([{":
            depth += 1
            cur += c
        elif c in ")]}":
            depth -= 1
            if depth > 0:
                cur += c
        elif c == "," and depth == 1:
            args.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    args.append(cur)
    return args


def problems(path):
    s = open(path, encoding="utf-8").read()
    out, n = [], 0
    for m in re.finditer(r"\bKETEN_LOG\(", s):
        line = s.count("\n", 0, m.start()) + 1
        args = args_of(s, m.end())
        n += 1
        if len(args) < 3:
            out.append("%s:%d: no field template" % (path, line))
            continue
        t = args[2].strip()
        if t == "NULL":
            continue
        rest = LITERAL.sub("", t).strip()
        if rest:
            out.append("%s:%d: the template is not a string literal: %s" % (path, line, t))
            continue
        tmpl = "".join(LITERAL.findall(t)).replace('\\"', '"')
        if not SHAPE.fullmatch(tmpl):
            out.append("%s:%d: not key=VALUE fields: %r" % (path, line, tmpl))
    return n, out


def main():
    root = sys.argv[1]
    total, num = 0, 0
    for d in FOLDERS:
        calls, bad = 0, []
        for name in sorted(os.listdir(os.path.join(root, d))):
            if name.endswith(".c"):
                c, b = problems(os.path.join(root, d, name))
                calls += c
                bad += b
        num += 1
        total += calls
        if bad:
            print("not ok %d - %s/: %d of %d KETEN_LOG templates are wrong" % (num, d, len(bad), calls))
            for b in bad:
                print("# " + b)
        else:
            print("ok %d - %s/: %d KETEN_LOG templates, all key=VALUE fields" % (num, d, calls))
    num += 1
    if total >= 100:
        print("ok %d - %d calls found in all (the scan found the call sites)" % (num, total))
    else:
        print("not ok %d - only %d calls found: the scan is broken" % (num, total))
    print("1..%d" % num)


main()
