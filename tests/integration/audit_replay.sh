#!/usr/bin/env bash
# keten-audit replay, stats, report, prove and check-proof on a log a real
# broker wrote with known exchanges (audit_lib.sh): every filter and all
# three formats checked against those exchanges (the CSV read with Python's
# csv module), the life of one message, the counts per pair / category /
# purpose / month, the HTML report rendered by headless Chromium showing the
# counts, and a proof bundle checked offline with its reject twins.
. "$(dirname "$0")/audit_lib.sh"

make_log || done_testing
stop_broker
check "a real broker run wrote a log and stopped" test "$BRC" -eq 0
MONTH=$(date -u +%Y-%m)

# rp ARGS...: replay as JSON lines into $T/.out (L in jl).
rp() {
    run "$AUDIT" replay --db broker --format jsonl "$@"
}

# ---- all records, three formats ----------------------------------------------------

rp
expect 0 "replay --format jsonl"
N=$(jget 'len(L)')
audit
check "one line per record of the log ($N)" test "$(jget 'len(L)')" = "$N"
rp
jl "[r['seq'] for r in L] == list(range($N))" "in log order"
jl 'len([r for r in L if r["event"] == "submitted"]) == 9' "9 submitted messages"
jl 'len([r for r in L if r["event"] == "receipted"]) == 8' "8 receipts"
jl 'len([r for r in L if r["event"] == "delivered"]) == 8' "8 deliveries"
jl 'len([r for r in L if r["event"] == "expired"]) == 1' "1 expiry"
jl 'len([r for r in L if r["event"] == "directory-installed"]) == 2' "2 directory versions"
jl "any(r['event'] == 'rejected' and r['msg_id'] == '$MSG_POLICY' and r['reason'] == 'policy' and r['rule'] == 3 and r['sender'] == 'gemeente-diemen' for r in L)" \
    "the policy refusal, with its msg_id, sender, reason and deciding rule 3"
jl "any(r['event'] == 'rejected' and r['reason'] == 'sender-mismatch' and r['sender'] == 'politie-mn' for r in L)" \
    "the spoofed sender's attempt, as the authenticated node"
jl 'any(r["event"] == "auth-failed" and len(r["node"]) == 64 for r in L)' \
    "the authentication failure, with the unknown key"
jl 'all(r["evidence"] == {"submitted": "sender-signature", "receipted": "recipient-signature", "directory-installed": "administrator-signatures"}.get(r["event"], "broker-claim") for r in L)' \
    "every record says what backs it (a partner's signature or the broker's claim)"
jl "any(r['event'] == 'submitted' and r['msg_id'] == '$MSG_Q' and r['kind'] == 'query' and r['recipients'] == ['politie-mn', 'belastingdienst'] and r['category'] == 'adrescheck' and r['purpose'] == 'riec-convenant-2024/art-5' and r['rule'] == 1 and r['size_bucket'] == 1024 for r in L)" \
    "the query: kind, both recipients, category, purpose, rule, size bucket"
jl "any(r['event'] == 'receipted' and r['msg_id'] == '$MSG_R' and r['node'] == 'gemeente-diemen' and r['category'] == 'adrescheck' and r['received_at'] for r in L)" \
    "a receipt carries its message's category and the recipient's stated time"
jl 'all("Hoofdstraat" not in json.dumps(r) and "Dorpsstraat" not in json.dumps(r) for r in L)' \
    "no subject identifier appears anywhere"
cp "$T/.out" all.jsonl

run "$AUDIT" replay --db broker --format csv
expect 0 "replay --format csv"
cp "$T/.out" all.csv
csv_matches() {
    "$PY" - all.csv all.jsonl <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
js = [json.loads(l) for l in open(sys.argv[2])]
assert len(rows) == len(js), (len(rows), len(js))
for r, j in zip(rows, js):
    for k in ("seq", "time", "event", "msg_id", "sender", "node", "kind", "category",
              "purpose", "rule", "reason", "evidence", "in_reply_to"):
        assert r[k] == ("" if j[k] is None else str(j[k])), (k, r[k], j[k])
    assert r["recipients"] == ";".join(j["recipients"]), r
    assert r["received_at"] == j.get("received_at", ""), r
PY
}
check "the CSV parses with Python's csv module, one row per record, the same fields as the JSON" \
    csv_matches
check "CSV lines end in CRLF (RFC 4180)" test "$(head -n 1 all.csv | od -c | grep -c '\\r')" -ge 1

run "$AUDIT" replay --db broker
expect 0 "replay as text"
check "one line per record" test "$(wc -l <"$T/.out")" = "$N"
stdout_says "[signed by the sender]" "text marks signed facts"
stdout_says "[broker's claim]" "and the broker's claims"
stdout_says "reason policy (rule 3)" "a refusal shows its reason and rule"

# ---- filters --------------------------------------------------------------------------

rp --node woonstad
jl "len(L) == 2 and [r['event'] for r in L] == ['submitted', 'expired'] and all(r['msg_id'] == '$MSG_X' for r in L)" \
    "--node woonstad: the message to it and its expiry, nothing else"
rp --node politie-mn
jl "set(r['msg_id'] for r in L if r['event'] == 'submitted') == {'$MSG_P1', '$MSG_P2', '$MSG_Q', '$MSG_R'}" \
    "--node politie-mn: the 4 messages it sent or received"
jl 'all("politie-mn" in [r["sender"], r["node"]] + r["recipients"] or r["event"] in ("delivered", "receipted", "expired") for r in L)' \
    "--node: every record names the node (or belongs to one of its messages)"
rp --category adrescheck
jl "sorted(r['msg_id'] for r in L if r['event'] == 'submitted') == sorted(['$MSG_Q', '$MSG_R', '$MSG_X'])" \
    "--category adrescheck: the query, the reply and the expired signal"
jl 'all(r["category"] == "adrescheck" for r in L) and len([r for r in L if r["event"] == "receipted"]) == 3' \
    "with their receipts, all of that category"
rp --purpose handhaving
jl 'len([r for r in L if r["event"] == "submitted"]) == 6 and all(r["purpose"] == "handhaving" for r in L)' \
    "--purpose handhaving: the 6 woonfraude signals"
rp --category woonfraude --node belastingdienst
jl 'len([r for r in L if r["event"] == "submitted"]) == 4' "filters combine (4 woonfraude signals to tax)"
T_V2=$(jget "[r['time_ms'] for r in L if r['msg_id'] == '$MSG_V2'][0]")
rp --from "$T_V2"
jl "L and all(r['time_ms'] >= $T_V2 for r in L) and any(r['msg_id'] == '$MSG_V2' for r in L)" \
    "--from (ms): only records at or after it"
A=$(jget 'len(L)')
rp --to "$T_V2"
jl "L and all(r['time_ms'] < $T_V2 for r in L)" "--to (ms): only records before it"
B=$(jget 'len(L)')
check "--from T and --to T split the log ($A + $B = $N)" test $((A + B)) -eq "$N"
ISO=$(date -u -d "@$((T_V2 / 1000))" +%Y-%m-%dT%H:%M:%SZ)
rp --from "$ISO"
jl "all(r['time_ms'] >= $((T_V2 / 1000 * 1000)) for r in L)" "--from takes ISO 8601 UTC too"
run "$AUDIT" replay --db broker --from yesterday
expect 2 "a time that is not ISO 8601 or ms is a usage error"
run "$AUDIT" replay --db broker --category 'Not A Label'
expect 2 "an invalid category is a usage error"
run "$AUDIT" replay --db broker --format xml
expect 2 "an unknown format is a usage error"

# ---- the life of one message ------------------------------------------------------------

rp --msg "$MSG_Q"
jl "[r['event'] for r in L] == ['submitted', 'delivered', 'delivered', 'receipted', 'receipted'] or sorted(r['event'] for r in L) == sorted(['submitted', 'delivered', 'delivered', 'receipted', 'receipted'])" \
    "--msg: the query's submit, two deliveries and two receipts"
run "$AUDIT" replay --db broker --msg "$MSG_Q"
expect 0 "--msg as text"
stdout_says "query adrescheck for purpose riec-convenant-2024/art-5, allowed by policy rule 1" \
    "the life names kind, category, purpose and rule"
stdout_says "to politie-mn:" "per recipient: politie-mn"
stdout_says "to belastingdienst:" "per recipient: belastingdienst"
check "both recipients receipted, signed" \
    test "$(grep -c '^    receipted  .*signed by the recipient' "$T/.out")" = 2
run "$AUDIT" replay --db broker --msg "$MSG_X"
stdout_says "expired" "an expired message's life shows the expiry"
stdout_says "never receipted" "and that it was never receipted"
run "$AUDIT" replay --db broker --msg "$MSG_V2"
stdout_says "pending    no receipt, refusal or expiry recorded yet" "a pending message shows as pending"
run "$AUDIT" replay --db broker --msg "$MSG_POLICY"
expect 0 "a refused message has a life too"
stdout_says "never accepted: no submitted record (1 rejected attempt(s))" "it was never accepted"
run "$AUDIT" replay --db broker --msg 00000000000000000000000000000000
expect 1 "an unknown msg_id"
says "has no record in this log" "is said to have no record"

# ---- interrupted: no copy of the log left behind ---------------------------------------------
# Reading a broker home, keten-audit exports the log to a private folder in
# TMPDIR. A reader that stops reading (`| head`), Ctrl-C or SIGTERM must not
# leave that copy behind. The read end of the pipe is closed before
# keten-audit starts: its first write gets SIGPIPE.

mkdir -p tmpd
sigpipe_run() {
    TMPDIR="$T/tmpd" "$PY" - "$AUDIT" "$@" <<'PY'
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
p = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.DEVNULL)
os.close(w)
print(p.returncode)
PY
}
check "replay into a closed pipe dies of SIGPIPE, as before" test "$(sigpipe_run replay --db broker)" = "-13"
check "... and leaves no export of the log in TMPDIR" test -z "$(ls -A tmpd)"
rm -rf tmpd && mkdir tmpd
check "stats into a closed pipe dies of SIGPIPE too" test "$(sigpipe_run stats --db broker)" = "-13"
check "... and leaves nothing in TMPDIR" test -z "$(ls -A tmpd)"
# Twin: a run that ends normally leaves nothing either, and SIGPIPE ignored
# by the caller stays ignored (the write fails, the run ends by itself).
rm -rf tmpd && mkdir tmpd
TMPDIR="$T/tmpd" "$AUDIT" replay --db broker > /dev/null
check "a whole replay leaves nothing in TMPDIR" test -z "$(ls -A tmpd)"
ign=$(TMPDIR="$T/tmpd" "$PY" -c '
import os, signal, subprocess, sys
r, w = os.pipe(); os.close(r)
p = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.DEVNULL,
                   preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_IGN))
print(p.returncode)' "$AUDIT" replay --db broker)
check "with SIGPIPE ignored, replay ends by itself (exit $ign, not killed)" test "$ign" -ge 0
check "... and leaves nothing in TMPDIR" test -z "$(ls -A tmpd)"

# Ctrl-C, SIGTERM, SIGHUP in the middle of a run: replay writes into a pipe of
# one page that nobody reads, so that it blocks with its export in TMPDIR; the
# signal comes only once the pipe is full and the export is there. Prints
# "ENTRIES_BEFORE RETURNCODE".
blocked_run() {
    TMPDIR="$T/tmpd" "$PY" - "$1" "$AUDIT" replay --db broker --format jsonl <<'PY'
import fcntl, os, signal, subprocess, sys, termios, time, array
sig = getattr(signal, sys.argv[1])
r, w = os.pipe()
size = fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
def defaults():
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_DFL)
p = subprocess.Popen(sys.argv[2:], stdout=w, stderr=subprocess.DEVNULL, preexec_fn=defaults)
os.close(w)
tmpd = os.environ["TMPDIR"]
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    buf = array.array("i", [0])
    fcntl.ioctl(r, termios.FIONREAD, buf)
    state = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0]
    if buf[0] >= size and state == "S" and os.listdir(tmpd):
        break
    time.sleep(0.05)
before = len(os.listdir(tmpd))
p.send_signal(sig)
print(before, p.wait())
PY
}
for s in INT TERM HUP; do
    rm -rf tmpd && mkdir tmpd
    out=$(blocked_run SIG$s)
    num=$(kill -l "$s")
    check "SIG$s while replay is blocked on a full pipe, its export in TMPDIR ($out)" \
        test "${out% *}" -ge 1
    check "... it dies of SIG$s" test "${out#* }" = "-$num"
    check "... and leaves nothing in TMPDIR" test -z "$(ls -A tmpd)"
done

# ---- stats ---------------------------------------------------------------------------------

run "$AUDIT" stats --db broker --by pair --json
expect 0 "stats --by pair --json"
jo 'sorted((r["sender"], r["recipient"], r["exchanges"]) for r in D["rows"]) == sorted([("gemeente-diemen", "politie-mn", 3), ("gemeente-diemen", "belastingdienst", 5), ("politie-mn", "gemeente-diemen", 1), ("gemeente-diemen", "woonstad", 1)])' \
    "exchanges per sender -> recipient pair: 3, 5, 1, 1"
jo 'D["totals"]["messages"] == 9 and D["totals"]["exchanges"] == 10 and D["totals"]["receipted"] == 8 and D["totals"]["refused"] == 0 and D["totals"]["refused_by_reason"] == {} and D["totals"]["expired"] == 1' \
    "totals: 9 messages, 10 exchanges, 8 receipted, none refused, 1 expired"
jo 'D["totals"]["rejected"] == 2 and D["totals"]["rejected_by_reason"] == {"policy": 1, "sender-mismatch": 1}' \
    "rejected attempts per reason"
run "$AUDIT" stats --db broker --by category,purpose --json
jo 'sorted((r["category"], r["purpose"], r["messages"], r["exchanges"]) for r in D["rows"]) == [("adrescheck", "riec-convenant-2024/art-5", 3, 4), ("woonfraude", "handhaving", 6, 6)]' \
    "per category and purpose: the query counts once as a message, twice as exchanges"
PR_RIEC='riec-convenant-2024/art-5'
run "$AUDIT" stats --db broker --by purpose,rule --json
expect 0 "stats --by purpose,rule --json"
jo "D['by'] == ['purpose', 'rule'] and D['rows'] == [
    {'purpose': 'handhaving', 'rule': 1, 'messages': 6, 'exchanges': 6, 'receipted': 5, 'refused': 0, 'expired': 0},
    {'purpose': '$PR_RIEC', 'rule': 1, 'messages': 2, 'exchanges': 3, 'receipted': 2, 'refused': 0, 'expired': 1},
    {'purpose': '$PR_RIEC', 'rule': 2, 'messages': 1, 'exchanges': 1, 'receipted': 1, 'refused': 0, 'expired': 0}]" \
    "per purpose and rule: handhaving under rule 1; the query and the expired signal under rule 1, the reply under rule 2"
jo 'D["totals"]["messages"] == 9 and D["totals"]["exchanges"] == 10 and D["totals"]["receipted"] == 8 and D["totals"]["expired"] == 1' \
    "and the same totals as by pair"
run "$AUDIT" stats --db broker --by rule,pair --json
jo "[(r['rule'], r['sender'], r['recipient'], r['exchanges']) for r in D['rows']] == [(1, 'gemeente-diemen', 'belastingdienst', 5), (1, 'gemeente-diemen', 'politie-mn', 3), (1, 'gemeente-diemen', 'woonstad', 1), (2, 'politie-mn', 'gemeente-diemen', 1)]" \
    "by rule and pair: rule 1 carries the municipality's messages, rule 2 the police's reply"
run "$AUDIT" stats --db broker --by rule
expect 0 "stats --by rule as a table"
check "the table's header names the rule column" grep -Eq '^rule +messages +exchanges' "$T/.out"
check "rule 1: 8 messages, 9 exchanges, 7 receipted, 0 refused, 1 expired" \
    grep -Eq '^1 +8 +9 +7 +0 +1$' "$T/.out"
check "rule 2: 1 message, 1 exchange, 1 receipted" grep -Eq '^2 +1 +1 +1 +0 +0$' "$T/.out"
check "the total line under it" grep -Eq '^total +9 +10 +8 +0 +1$' "$T/.out"
rp
T_FIRST_QUERY=$(jget "[r['time_ms'] for r in L if r['event'] == 'submitted' and r['msg_id'] == '$MSG_Q'][0]")
run "$AUDIT" stats --db broker --by purpose,rule --to "$T_FIRST_QUERY" --json
expect 0 "stats --by purpose,rule --to (the query's submit)"
jo "D['rows'] == [{'purpose': 'handhaving', 'rule': 1, 'messages': 5, 'exchanges': 5, 'receipted': 5, 'refused': 0, 'expired': 0}]" \
    "twin: before the query, one purpose under one rule is one row"
run "$AUDIT" stats --db broker --by month --json
jo "D['rows'] == [{'month': '$MONTH', 'messages': 9, 'exchanges': 10, 'receipted': 8, 'refused': 0, 'expired': 1}]" \
    "per month"
run "$AUDIT" stats --db broker
expect 0 "stats as a table (default pair,category,month)"
stdout_says "gemeente-diemen  belastingdienst  adrescheck" "a row per pair and category"
check "the total line (messages, exchanges, receipted, refused, expired)" \
    grep -Eq '^total +9 +10 +8 +0 +1$' "$T/.out"
stdout_says "refused by recipients  0" "the recipients' refusals are counted in the totals"
run "$AUDIT" stats --db broker --by pair,pair
expect 2 "a key given twice is a usage error"
run "$AUDIT" stats --db broker --by colour
expect 2 "an unknown key is a usage error"
says "is not one of pair, category, month, purpose, rule" "the usage error names the keys, rule among them"
run "$AUDIT" stats --help
stdout_says "purpose, rule (the number of" "stats --help names the rule key"

# ---- report ----------------------------------------------------------------------------------

run "$AUDIT" report --db broker --anchor admin/network.pub --out report.html
expect 0 "report --out report.html"
check "one self-contained file: no script, no external reference" \
    test "$(grep -Ec '<script|src="http|href="http|@import|url\(' report.html)" = 0
if [ -x /usr/bin/chromium ]; then
    timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu --dump-dom \
        "file://$T/report.html" >dom.html 2>chromium.err
    totals() {
        "$PY" - dom.html <<'PY'
import html.parser, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.t = None; self.cells = []; self.row = None
    def handle_starttag(self, tag, a):
        if tag == "table": self.t = dict(a).get("id")
        if tag == "tr" and self.t == "totals": self.row = []
    def handle_data(self, d):
        if self.row is not None and d.strip(): self.row.append(d.strip())
    def handle_endtag(self, tag):
        if tag == "tr" and self.row is not None: self.cells.append(self.row); self.row = None
        if tag == "table": self.t = None
p = P(); p.feed(open(sys.argv[1]).read())
d = {r[0]: r[1] for r in p.cells if len(r) == 2}
want = {"Messages submitted": "9", "Exchanges (message \u00d7 recipient)": "10",
        "Receipted by the recipient": "8", "Expired unreceipted": "1", "Rejected attempts": "2"}
sys.exit(0 if all(d.get(k) == v for k, v in want.items()) else 1)
PY
    }
    check "Chromium renders the report and it shows the counts (9 messages, 10 exchanges, 8 receipted, 1 expired, 2 rejected)" totals
    check "the rendered report says the log verifies" grep -q "The audit log verifies." dom.html
    check "the rendered report has the bar chart and the matrix" \
        grep -q '<svg id="chart"' dom.html
    check "the matrix shows 5 exchanges from gemeente-diemen to belastingdienst" \
        "$PY" -c 'import re,sys; s=open("dom.html").read(); m=s[s.index("id=\"matrix\""):]; row=m[m.index("<tr><th>gemeente-diemen <span class=\"org\">(Gemeente Diemen)</span></th>"):].split("</tr>")[0]; sys.exit(0 if re.findall(r">(\d+)</td>", row)[:4] == ["5", "0", "3", "1"] else 1)'
else
    : >"$T/.all"
    not_ok "Chromium renders the report: /usr/bin/chromium is not installed (scripts/deps.sh --test)"
fi
check "the report file holds the counts of the known exchanges" \
    grep -q '<tr><th>Exchanges (message &times; recipient)</th><td class="n">10</td></tr>' report.html
run "$AUDIT" report --db broker --out plain.html
expect 0 "a report without --anchor"
check "says plainly that it was not verified" grep -q "Not verified." plain.html

# ---- prove / check-proof -------------------------------------------------------------------------

run "$AUDIT" prove --db broker "$MSG_Q" --out proof.json
expect 0 "prove the query"
cp proof.json "$T/.out"
jo "D['format'] == 'keten-proof/v2' and D['msg_id'] == '$MSG_Q' and D['network'] == 'riec-test'" \
    "the bundle names format, message and network"
jo 'len(D["records"]) == 5 and all(r["tree_size"] == int(D["checkpoint"].split("\n")[1]) for r in D["records"])' \
    "its 5 records lead to the checkpoint's tree size"
jo 'len(D["directories"]) == int(D["checkpoint"].split("\n")[3].split()[1]) and D["log_key"]["name"] == "broker" and "\n\u2014 broker " in D["checkpoint"]' \
    "it carries the directory chain up to the checkpoint's version, the log key and the signed note"
rfc9162() {
    "$PY" - proof.json <<'PY'
import base64, hashlib, json, sys
# RFC 9162 2.1.3.2, written out here: an implementation that is not keten's.
D = json.load(open(sys.argv[1]))
lines = D["checkpoint"].split("\n")
root = base64.b64decode(lines[2])
def h(b): return hashlib.sha256(b).digest()
for r in D["records"]:
    fn, sn = r["leaf_index"], r["tree_size"] - 1
    x = h(b"\x00" + base64.b64decode(r["leaf"]))
    for p in map(base64.b64decode, r["audit_path"]):
        if sn == 0: sys.exit(1)
        if fn & 1 or fn == sn:
            x = h(b"\x01" + p + x)
            if not fn & 1:
                while fn and not fn & 1: fn >>= 1; sn >>= 1
        else:
            x = h(b"\x01" + x + p)
        fn >>= 1; sn >>= 1
    if sn != 0 or x != root: sys.exit(1)
PY
}
check "the audit paths verify with an independent RFC 9162 implementation" rfc9162
run "$AUDIT" check-proof proof.json --anchor admin/network.pub
expect 0 "check-proof: the proof holds"
stdout_says "5 included in that tree" "all 5 records are included"
stdout_says "witnessed" "the checkpoint's witnesses are counted"
stdout_says "from         gemeente-diemen (the sender's signature on the header verified)" \
    "check-proof says who sent the message"
stdout_says "to           politie-mn, belastingdienst" "and to whom"
stdout_says "what         query, category adrescheck, purpose riec-convenant-2024/art-5" \
    "and what kind, category and purpose"
stdout_says "allowed by   policy rule 1 (the broker's decision" "and the rule the broker recorded"
stdout_says "(the sender's clock, signed)" "and when it was created, by the sender's clock"
check "every record line has its (broker's) time" \
    test "$(grep -cE '^    leaf [0-9]+ +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z  ' "$T/.out")" = 5
run "$AUDIT" check-proof proof.json --anchor admin/network.pub --json
jo 'D["ok"] and [r["event"] for r in D["records"]].count("receipted") == 2' "check-proof --json"
jo 'D["message"]["sender"] == "gemeente-diemen" and D["message"]["recipients"] == ["politie-mn", "belastingdienst"] and D["message"]["kind"] == "query" and D["message"]["category"] == "adrescheck" and D["message"]["purpose"] == "riec-convenant-2024/art-5" and D["message"]["rule"] == 1 and D["message"]["created_at"].endswith("Z") and all(r["time"].endswith("Z") for r in D["records"])' \
    "check-proof --json: the message as signed, and each record's time"
jo 'all(r["expired_for"] == [] for r in D["records"])' \
    "twin: a message every recipient answered has no record that expired for anyone"
# An expiry says for whom the message expired (the recipients that had not
# answered), in text and in --json.
run "$AUDIT" prove --db broker "$MSG_X" --out proof-x.json
expect 0 "prove the message that expired"
run "$AUDIT" check-proof proof-x.json --anchor admin/network.pub
expect 0 "its proof holds"
check "check-proof says for whom it expired" \
    grep -qE '^    leaf [0-9]+ +[0-9T:.Z-]+  expired    for woonstad  \(the broker.s claim\)$' "$T/.out"
run "$AUDIT" check-proof proof-x.json --anchor admin/network.pub --json
jo '[r["expired_for"] for r in D["records"] if r["event"] == "expired"] == [["woonstad"]]' \
    "check-proof --json: expired_for names woonstad"
run "$AUDIT" prove --db broker "$MSG_V2" --out proof2.json
expect 0 "prove a message sent under directory version 2"
cp proof2.json "$T/.out"
jo 'len(D["directories"]) == 2' "its bundle carries both versions of the chain"
run "$AUDIT" check-proof proof2.json --anchor admin/network.pub
expect 0 "and it holds: the log key is tied to the anchor through version 2"

# Reject twins: one changed byte, a forged key, another network.
"$PY" - proof.json byte.json <<'PY'
import json, sys
D = json.load(open(sys.argv[1]))
leaf = D["records"][0]["leaf"]
i = len(leaf) // 2
D["records"][0]["leaf"] = leaf[:i] + ("A" if leaf[i] != "A" else "B") + leaf[i + 1:]
json.dump(D, open(sys.argv[2], "w"), indent=2)
PY
run "$AUDIT" check-proof byte.json --anchor admin/network.pub
expect 3 "one changed character in a leaf: the proof does not hold"
says "do not hash to the bundle's leaf_hash" "it says the leaf was changed"
"$PY" - proof.json path.json <<'PY'
import base64, hashlib, json, sys
D = json.load(open(sys.argv[1]))
r = D["records"][0]
leaf = bytearray(base64.b64decode(r["leaf"])); leaf[-1] ^= 1
r["leaf"] = base64.b64encode(bytes(leaf)).decode()
r["leaf_hash"] = base64.b64encode(hashlib.sha256(b"\x00" + bytes(leaf)).digest()).decode()
json.dump(D, open(sys.argv[2], "w"), indent=2)
PY
run "$AUDIT" check-proof path.json --anchor admin/network.pub
expect 3 "a changed leaf with a matching leaf_hash: the proof does not hold"
says "does not lead to the checkpoint's root" "it says the path does not lead to the root"
"$PY" - proof.json note.json <<'PY'
import json, sys
D = json.load(open(sys.argv[1]))
lines = D["checkpoint"].split("\n")
lines[1] = str(int(lines[1]) + 1)
D["checkpoint"] = "\n".join(lines)
json.dump(D, open(sys.argv[2], "w"), indent=2)
PY
run "$AUDIT" check-proof note.json --anchor admin/network.pub
expect 3 "a changed tree size in the checkpoint: the proof does not hold"
"$PY" - proof.json v1.json <<'PY'
import json, sys
D = json.load(open(sys.argv[1]))
D["format"] = "keten-proof/v1"
json.dump(D, open(sys.argv[2], "w"), indent=2)
PY
run "$AUDIT" check-proof v1.json --anchor admin/network.pub
expect 3 "a version 1 bundle is refused"
says "a version 1 proof bundle: made by a keten before receipt batches; ask for a new one" \
    "it says why and what to do"
"$PY" - proof.json nosubmit.json <<'PY'
import json, sys
D = json.load(open(sys.argv[1]))
D["records"] = [r for r in D["records"] if r["event"] != "submitted"]
json.dump(D, open(sys.argv[2], "w"), indent=2)
PY
run "$AUDIT" check-proof nosubmit.json --anchor admin/network.pub
expect 3 "a bundle without the submitted record: its receipts cannot be tied to an envelope"
says "comes before any submitted record of the message" "it says the submitted record is missing"
head -c 200 proof.json >cut.json
run "$AUDIT" check-proof cut.json --anchor admin/network.pub
expect 3 "a truncated bundle: the proof does not hold"
run "$KEYS" init --dir other --network other-net --threshold 1 --admins 1 --no-passphrase
run "$AUDIT" check-proof proof.json --anchor other/network.pub
expect 3 "against another network's anchor the proof does not hold"
run "$AUDIT" check-proof missing.json --anchor admin/network.pub
expect 1 "a missing bundle file is a failure"
run "$AUDIT" prove --db broker 00000000000000000000000000000000
expect 1 "prove of an unknown message"
says "has no record in this log" "says it has no record"
run "$AUDIT" prove --db broker nothex
expect 2 "prove with a malformed msg_id is a usage error"
done_testing
