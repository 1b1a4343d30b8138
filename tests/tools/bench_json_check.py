#!/usr/bin/python3
"""bench_json_check.py - docs/benchmarks.md against the load generators' JSON.

keten-bench and keten-bench-exchange write their results with --json FILE.
docs/benchmarks.md documents every key of those files in tables; this checks
that a file and the page agree: every key of the file has a row, and every
row's key is in the file.

How the page is read: a line `<!-- keys: SHAPE, SHAPE... -->` says which
shapes the table right after it belongs to (keten-bench, keten-bench
--backlog, keten-bench-exchange, keten-bench-exchange --backlog). The first
column of each row holds the key in backquotes: `.` between levels, `[]` for
every element of an array, `{a,b,p99.9}` for several keys at one level (a
key with a dot in it is written in braces), `<...>` for any key (the
summary's row labels). A parenthesis after the key, e.g. "(if any)", marks a
key that may be absent. Every other key must be in the file: check files
written with --rate half (keten-bench-exchange's default), which write all
of them.

Of the file, every leaf (a number, text, true/false, null, or an empty
object or array) must match a row. A required row's key must be in the file,
in every element of an array and under every key of a <...> level.

Usage: bench_json_check.py DOC SHAPE JSON...
         exit 0 when each JSON file matches the rows of SHAPE; 1 with a line
         per undocumented key and per documented key that is absent; 2 when
         the page or a file cannot be read.
       bench_json_check.py --self-test DOC SHAPE JSON
         shows that the check fails when a row is removed from the page, a
         key is added to the file, or a documented key is removed from it.
"""
import copy
import json
import re
import sys

MARKER = re.compile(r"^\s*<!--\s*keys:\s*(.*?)\s*-->\s*$")
FIRST_CELL = re.compile(r"^`([^`]+)`\s*(\(.*\))?\s*$")


class DocError(Exception):
    pass


def split_pattern(text):
    """`runs[].a.{p50,p99.9}` -> segments: "runs", "[]", "a", ("p50", "p99.9").

    A segment is a key (str), "[]", a tuple of alternative keys, or None
    (<...>: any key)."""
    segs, i, cur = [], 0, ""

    def flush(allow_empty=False):
        nonlocal cur
        if cur:
            segs.append(cur)
        elif not allow_empty:
            raise DocError(f"`{text}`: an empty level")
        cur = ""

    while i < len(text):
        c = text[i]
        if c == "{" or c == "<":
            close = "}" if c == "{" else ">"
            j = text.find(close, i)
            if cur or j < 0:
                raise DocError(f"`{text}`: {c}...{close} must be a whole level")
            inner = text[i + 1 : j]
            if c == "{":
                alts = tuple(a.strip() for a in inner.split(","))
                if not all(alts):
                    raise DocError(f"`{text}`: an empty key in braces")
                segs.append(alts)
            else:
                segs.append(None)
            i = j + 1
            if i < len(text) and text[i] not in ".[":
                raise DocError(f"`{text}`: text after {c}...{close}")
            cur = ""
            if i < len(text) and text[i] == ".":
                i += 1
                if i >= len(text):
                    raise DocError(f"`{text}`: ends with a dot")
            continue
        if text.startswith("[]", i):
            if cur:
                segs.append(cur)
                cur = ""
            elif not segs:
                raise DocError(f"`{text}`: [] with nothing before it")
            segs.append("[]")
            i += 2
            if i < len(text):
                if text[i] != ".":
                    raise DocError(f"`{text}`: [] must end a level")
                i += 1
                if i >= len(text):
                    raise DocError(f"`{text}`: ends with a dot")
            continue
        if c == ".":
            flush()
        elif c in "[]}>,":
            raise DocError(f"`{text}`: unexpected {c!r}")
        else:
            cur += c
        i += 1
    if cur:
        segs.append(cur)
    elif text.endswith("."):
        raise DocError(f"`{text}`: ends with a dot")
    if not segs:
        raise DocError("an empty key")
    return segs


def expand(segs):
    """Every concrete pattern of segs (braces expanded); None stays a wildcard."""
    out = [[]]
    for s in segs:
        alts = s if isinstance(s, tuple) else (s,)
        out = [p + [a] for p in out for a in alts]
    return [tuple(p) for p in out]


def show(path):
    text = ""
    for s in path:
        if s == "[]":
            text += "[]"
        else:
            text += ("." if text else "") + ("<...>" if s is None else s)
    return text


def read_doc(text, shape):
    """The rows of SHAPE: a list of (patterns, optional, shown, line number)."""
    rows, shapes_seen = [], set()
    current, in_table = None, False
    for n, line in enumerate(text.splitlines(), 1):
        m = MARKER.match(line)
        if m:
            current = {s.strip() for s in m.group(1).split(",") if s.strip()}
            if not current:
                raise DocError(f"line {n}: a keys comment names no shape")
            shapes_seen |= current
            in_table = False
            continue
        if current is None:
            continue
        if not line.lstrip().startswith("|"):
            if in_table:  # the table ended
                current, in_table = None, False
            elif line.strip():
                raise DocError(f"line {n}: a keys comment not followed by a table")
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_table:  # the header row
            in_table = True
            continue
        if re.fullmatch(r"[-: |]+", line.strip()):
            continue
        cm = FIRST_CELL.match(cells[0])
        if cm is None:
            raise DocError(f"line {n}: the first cell is not a key in backquotes: {cells[0]}")
        if shape in current:
            try:
                pats = expand(split_pattern(cm.group(1)))
            except DocError as e:
                raise DocError(f"line {n}: {e}") from None
            rows.append((pats, cm.group(2) is not None, cm.group(1), n))
    if shape not in shapes_seen:
        raise DocError(f"no table is marked for {shape!r} (<!-- keys: {shape} -->)")
    return rows


def walk(value, prefix, leaves):
    """The leaves of value as paths (tuples of keys and "[]")."""
    if isinstance(value, dict):
        if not value:
            leaves.add(prefix)
        for k, v in value.items():
            walk(v, prefix + (k,), leaves)
    elif isinstance(value, list):
        if not value:
            leaves.add(prefix)
        for v in value:
            walk(v, prefix + ("[]",), leaves)
    else:
        leaves.add(prefix)


def matches(pattern, path):
    return len(pattern) == len(path) and all(
        p == q or (p is None and q != "[]") for p, q in zip(pattern, path)
    )


def is_prefix(path, pattern):
    return len(path) < len(pattern) and all(
        p == q or (p is None and q != "[]") for p, q in zip(pattern, path)
    )


def check(rows, data):
    """The problems: a list of text lines (empty when the file matches)."""
    leaves = set()
    walk(data, (), leaves)
    problems = []
    patterns = [p for pats, _, _, _ in rows for p in pats]
    for leaf in sorted(leaves, key=show):
        if leaf == ():
            problems.append("the file is empty")
            continue
        if not any(matches(p, leaf) for p in patterns) and not any(
            is_prefix(leaf, p) for p in patterns
        ):
            problems.append(f"undocumented key: {show(leaf)}")
    for pats, optional, shown, n in rows:
        if optional:
            continue
        for p in pats:
            for where in absent(p, data, ""):
                problems.append(f"documented (line {n}, `{shown}`) but absent: {where}")
    return problems


def absent(pattern, value, where):
    """Where the file lacks pattern: every element of an array and every key
    of a <...> level must have the rest of it. Concrete places, e.g.
    runs[1].broker.cpu_s."""
    if not pattern:
        return []
    seg, rest = pattern[0], pattern[1:]
    if seg == "[]":
        if not isinstance(value, list) or not value:
            return [f"{where}[] (no array, or an empty one)" + (f" .{show(rest)}" if rest else "")]
        out = []
        for i, v in enumerate(value):
            out += absent(rest, v, f"{where}[{i}]")
        return out
    dot = "." if where else ""
    if not isinstance(value, dict):
        return [f"{where}{dot}{show(pattern)}"]
    if seg is None:
        if not value:
            return [f"{where}{dot}{show(pattern)} (an empty object)"]
        out = []
        for k, v in value.items():
            out += absent(rest, v, f"{where}{dot}{k}")
        return out
    if seg not in value:
        return [f"{where}{dot}{show(pattern)}"]
    return absent(rest, value[seg], f"{where}{dot}{seg}")


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DocError(f"{path}: {e}") from None


def run(doc_path, shape, json_paths):
    try:
        with open(doc_path, encoding="utf-8") as f:
            rows = read_doc(f.read(), shape)
        files = [(p, load_json(p)) for p in json_paths]
    except (OSError, DocError) as e:
        print(f"bench_json_check: {e}", file=sys.stderr)
        return 2
    bad = 0
    for path, data in files:
        problems = check(rows, data)
        for line in problems:
            print(f"{path}: {line}")
        if problems:
            bad += 1
        else:
            print(f"{path}: every key documented ({shape}), every documented key present")
    return 1 if bad else 0


def first_key_path(data, rows):
    """A leaf of data that a required, non-wildcard row documents."""
    leaves = set()
    walk(data, (), leaves)
    for pats, optional, shown, n in rows:
        if optional or any(None in p for p in pats):
            continue
        for leaf in sorted(leaves, key=show):
            if any(matches(p, leaf) for p in pats):
                return pats, shown, n, leaf
    return None


def remove_path(data, path):
    """Removes the key at path from data (in every element of an array)."""
    if path[0] == "[]":
        for v in data:
            remove_path(v, path[1:])
    elif len(path) == 1:
        del data[path[0]]
    else:
        remove_path(data[path[0]], path[1:])


def self_test(doc_path, shape, json_path):
    fails = 0

    def expect(what, cond):
        nonlocal fails
        print(("PASS " if cond else "FAIL ") + what)
        fails += 0 if cond else 1

    try:
        with open(doc_path, encoding="utf-8") as f:
            text = f.read()
        rows = read_doc(text, shape)
        data = load_json(json_path)
    except (OSError, DocError) as e:
        print(f"bench_json_check: {e}", file=sys.stderr)
        return 2
    expect("the page and the file agree", check(rows, data) == [])
    found = first_key_path(data, rows)
    if found is None:
        expect("a documented key to remove is in the file", False)
        return 1
    pats, shown, n, leaf = found
    # 1. a row removed from the page: its key becomes undocumented
    lines = text.splitlines()
    cut = "\n".join(lines[: n - 1] + lines[n:])
    probs = check(read_doc(cut, shape), data)
    expect(
        f"row `{shown}` removed: {show(leaf)} is reported undocumented",
        f"undocumented key: {show(leaf)}" in probs,
    )
    # 2. a key added to a copy of the file: reported undocumented
    fake = copy.deepcopy(data)
    fake.setdefault("config", {})["not_a_documented_key"] = 1
    probs = check(rows, fake)
    expect(
        "config.not_a_documented_key added: reported undocumented",
        probs == ["undocumented key: config.not_a_documented_key"],
    )
    # 3. a documented key removed from a copy of the file: reported absent
    gone = copy.deepcopy(data)
    remove_path(gone, leaf)
    probs = check(rows, gone)
    expect(
        f"{show(leaf)} removed from the file: reported absent",
        any(re.sub(r"\[\d+\]", "[]", p).endswith(f"but absent: {show(leaf)}") for p in probs),
    )
    # 4. a malformed row is refused, not skipped
    bad = text.replace(f"`{shown}`", shown, 1)
    try:
        read_doc(bad, shape)
        refused = False
    except DocError:
        refused = True
    expect("a row whose key is not in backquotes is refused", refused)
    return 1 if fails else 0


def main(argv):
    if len(argv) == 4 and argv[0] == "--self-test":
        return self_test(argv[1], argv[2], argv[3])
    if len(argv) < 3 or argv[0].startswith("-"):
        print(__doc__.split("Usage: ")[1], file=sys.stderr)
        return 2
    return run(argv[0], argv[1], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
