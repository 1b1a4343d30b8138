#!/usr/bin/env python3
"""The naming rule of docs/hacking.md ("Names"), checked over the headers.

A module of lib/ or client/ (lib/NAME.h, client/NAME.h) declares only
functions and types named keten_NAME or keten_NAME_...; lib/util.h, the small
helpers every module uses, is the one exception the rule names. A header may
name another module's type (client/node.h declares the types of the node's
modules) when that module exists.

A module of broker/, audit/ or keys/ (PROGRAM/NAME.h) declares functions
named NAME_... or NAME (no keten_ prefix); cmd.h declares cmd_VERB.

Usage: names_check.py SOURCE-ROOT   (exit 1 and one line per name that
breaks the rule); names_check.py --self-test SOURCE-ROOT.
"""
import os
import re
import sys

EXEMPT = {"lib/util.h"}


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    src = re.sub(r"//[^\n]*", " ", src)
    # preprocessor lines (macros may hold calls), joined continuations first
    src = re.sub(r"\\\n", " ", src)
    return re.sub(r"^\s*#[^\n]*", " ", src, flags=re.M)


def declared(src):
    """Functions declared or defined at file level, and typedef names."""
    src = strip_comments(src)
    # drop bodies of structs/enums/functions: keep file-level text only
    out, depth = [], 0
    for ch in src:
        if ch == "{":
            depth += 1
            out.append("{")
        elif ch == "}":
            depth -= 1
            out.append("}")
        elif depth == 0:
            out.append(ch)
    flat = "".join(out)
    funcs, types = set(), set()
    for stmt in re.split(r";", flat):
        stmt = stmt.strip()
        if not stmt:
            continue
        m = re.match(r"typedef\b.*?\b(\w+)\s*$", stmt, flags=re.S)
        if m and "(" not in stmt.split(m.group(1))[-1]:
            types.add(m.group(1))
            continue
        if stmt.startswith("typedef") or stmt.startswith("extern \"C\""):
            continue
        # a declaration: return type words, then NAME(
        m = re.match(r"(?:[\w\*\s]+?)\b(\w+)\s*\(", stmt, flags=re.S)
        if m and not stmt.startswith("static"):
            funcs.add(m.group(1))
    return funcs, types


def check_file(root, rel, modules):
    d, base = rel.split("/")
    mod = base[:-2]
    funcs, types = declared(open(os.path.join(root, rel)).read())
    bad = []
    for name in sorted(funcs | types):
        if d in ("lib", "client"):
            if rel in EXEMPT or not name.startswith("keten_"):
                continue
            if name == "keten_" + mod or name.startswith("keten_" + mod + "_"):
                continue
            if name in types and any(
                    name == "keten_" + m or name.startswith("keten_" + m + "_") for m in modules):
                continue  # another module's type, declared here
            bad.append(name)
        else:
            if mod == "cmd":
                ok = name.startswith("cmd_")
            else:
                ok = name == mod or name.startswith(mod + "_") or name.startswith("Keten__")
            if not ok and name in funcs:
                bad.append(name)
    return ["%s: %s (the rule: %s)" % (rel, n,
            "keten_%s_..." % mod if d in ("lib", "client") else
            ("cmd_VERB" if mod == "cmd" else "%s_..." % mod)) for n in bad]


def check(root):
    problems = []
    modules = set()
    headers = []
    for d in ("lib", "client", "broker", "audit", "keys"):
        for f in sorted(os.listdir(os.path.join(root, d))):
            if f.endswith(".h"):
                headers.append(d + "/" + f)
                modules.add(f[:-2])
    for rel in headers:
        problems += check_file(root, rel, modules)
    return problems, len(headers)


def self_test(root):
    """The checker finds a name that breaks the rule, and passes one that keeps it."""
    import tempfile
    with tempfile.TemporaryDirectory() as t:
        for d in ("lib", "client", "broker", "audit", "keys"):
            os.mkdir(os.path.join(t, d))
        open(os.path.join(t, "lib", "thing.h"), "w").write(
            "/* keten_other_x() in a comment */\n#define X(a) keten_macro(a)\n"
            "typedef struct keten_thing { int a; } keten_thing;\n"
            "keten_err keten_thing_open(const char *p,\n    keten_thing **out);\n"
            "int keten_stray(void);\n")
        open(os.path.join(t, "broker", "queue.h"), "w").write(
            "int queue_push(int x);\nint keten_queue_pop(void);\n")
        open(os.path.join(t, "keys", "cmd.h"), "w").write("int cmd_publish(int argc, char **argv);\n")
        problems, _ = check(t)
        want = {"lib/thing.h: keten_stray", "broker/queue.h: keten_queue_pop"}
        got = {p.split(" (")[0] for p in problems}
        if got != want:
            print("self-test: expected %s, got %s" % (sorted(want), sorted(got)))
            return 1
    print("self-test: a stray lib name and a prefixed broker name are found; the rest passes")
    return 0


def main():
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        if self_test(args[1]) != 0:
            return 1
        args = args[1:]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-2].strip(), file=sys.stderr)
        return 2
    problems, n = check(args[0])
    for p in problems:
        print(p)
    print("%d headers checked, %d names break the rule" % (n, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
