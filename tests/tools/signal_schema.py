#!/usr/bin/env python3
"""signal_schema.py - the JSON Schema of a signal agrees with the node.

Usage: signal_schema.py SCHEMA KETEN_NODE CORPUS_DIR SIGNALS_MD

Prints TAP. Checks that SCHEMA (docs/signal.schema.json) is a valid JSON
Schema of draft 2020-12 (Draft202012Validator.check_schema), then, for every
file of CORPUS_DIR (tests/fuzz/corpus/signal) and every ```json block of
SIGNALS_MD (docs/signals.md), that the schema's verdict equals the node's:
`keten-node send --dry-run --json --signal FILE` with no node running, which
checks the signal's own rules (what the schema can describe; registration
in a directory is the node's alone). The schema applies to I-JSON (RFC
7493), as the node reads it: a text that is not UTF-8, that repeats a member
name or holds a lone surrogate is not a JSON document the schema can judge,
and counts as refused. Every example of SIGNALS_MD must be valid, and the
corpus must hold both verdicts, so that agreement cannot come from a
validator that refuses (or accepts) everything. Every disagreement is listed.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

try:
    import jsonschema
except ImportError:
    print("Bail out! python3-jsonschema is not installed (scripts/deps.sh --test installs it)")
    sys.exit(1)

N = 0
FAILED = 0


def ok(cond, what, diag=None):
    global N, FAILED
    N += 1
    if cond:
        print("ok %d - %s" % (N, what))
    else:
        FAILED += 1
        print("not ok %d - %s" % (N, what))
        for line in (diag or "").splitlines():
            print("# " + line)
    return cond


class NotIJson(Exception):
    pass


def no_duplicates(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise NotIJson("member %r given twice" % k)
        seen.add(k)
    return dict(pairs)


def no_constant(name):
    raise NotIJson("%s is not JSON" % name)


def check_strings(v):
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise NotIJson("a lone surrogate: %s" % e)
    elif isinstance(v, dict):
        for k, x in v.items():
            check_strings(k)
            check_strings(x)
    elif isinstance(v, list):
        for x in v:
            check_strings(x)


def schema_verdict(validator, data):
    """(valid, why) of the schema, for the bytes of one file."""
    try:
        text = data.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
        check_strings(doc)
    except (UnicodeDecodeError, ValueError, NotIJson) as e:
        return False, "not I-JSON: %s" % e
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        return False, "; ".join(
            "%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(root)", e.message[:160])
            for e in errors)
    return True, "valid"


def node_verdict(node, home, path):
    """(valid, why) of keten-node send --dry-run --json, run with no node."""
    r = subprocess.run([node, "send", "--home", home, "--to", "politie-mn", "--signal", path,
                        "--dry-run", "--json"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out = r.stdout.decode("utf-8", "replace")
    try:
        d = json.loads(out)
    except ValueError:
        return None, "exit %d, no JSON: %s %s" % (r.returncode, out, r.stderr.decode(
            "utf-8", "replace"))
    if d.get("checked") != "signal only" or r.returncode not in (0, 1) \
            or (r.returncode == 0) != (d.get("valid") is True):
        return None, "exit %d, unexpected answer: %s" % (r.returncode, out)
    if d["valid"]:
        return True, "valid"
    return False, "; ".join("%s: %s" % (p["path"], p["problem"]) for p in d["problems"])


def main():
    if len(sys.argv) != 5:
        print("usage: signal_schema.py SCHEMA KETEN_NODE CORPUS_DIR SIGNALS_MD", file=sys.stderr)
        return 2
    schema_path, node, corpus, signals_md = sys.argv[1:]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        valid_schema = True
        why = ""
    except jsonschema.exceptions.SchemaError as e:
        valid_schema = False
        why = str(e)
    ok(valid_schema, "the schema is a valid JSON Schema (draft 2020-12)", why)
    ok(schema.get("$schema") == "https://json-schema.org/draft/2020-12/schema",
       "the schema names draft 2020-12")
    if not valid_schema:
        return 1
    validator = jsonschema.Draft202012Validator(schema)

    with tempfile.TemporaryDirectory() as tmp:
        home = os.path.join(tmp, "no-node")  # no node runs here: the signal alone
        cases = []
        for name in sorted(os.listdir(corpus)):
            path = os.path.join(corpus, name)
            if os.path.isfile(path):
                cases.append(("corpus " + name, path, None))
        with open(signals_md, encoding="utf-8") as f:
            md = f.read()
        blocks = re.findall(r"^```json\n(.*?)^```$", md, re.S | re.M)
        ok(len(blocks) >= 4, "signals.md has an example of each kind (%d json blocks)" % len(
            blocks))
        for i, block in enumerate(blocks):
            path = os.path.join(tmp, "signals-md-%d.json" % (i + 1))
            with open(path, "w", encoding="utf-8") as f:
                f.write(block)
            cases.append(("signals.md example %d" % (i + 1), path, True))

        verdicts = {True: 0, False: 0}
        disagreements = []
        for what, path, must in cases:
            with open(path, "rb") as f:
                data = f.read()
            s_valid, s_why = schema_verdict(validator, data)
            n_valid, n_why = node_verdict(node, home, path)
            agree = n_valid is not None and s_valid == n_valid
            if not agree:
                disagreements.append(what)
            diag = "schema: %s\nnode: %s" % (s_why, n_why)
            ok(agree, "%s: the schema and the node agree (%s)" % (
                what, "valid" if s_valid else "refused"), diag)
            if must is not None:
                ok(n_valid is True and s_valid is True,
                   "%s is a valid signal" % what, diag)
            if agree:
                verdicts[s_valid] += 1
        ok(verdicts[True] > 0 and verdicts[False] > 0,
           "both verdicts occur (%d valid, %d refused)" % (verdicts[True], verdicts[False]))
        ok(not disagreements, "no disagreement",
           "disagreements: " + ", ".join(disagreements))
    print("1..%d" % N)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
