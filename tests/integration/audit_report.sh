#!/usr/bin/env bash
# What an auditor sees (audit_lib.sh's log, plus a connection attempt of the
# revoked woonstad with its old key): replay leaves rule and size_bucket
# empty where they do not apply; an authentication failure of a past
# certificate's key is matched to its node; prove picks the checkpoint its
# --help names; and the HTML report, rendered by headless Chromium to a PNG
# and to a DOM, shows organisation names, the revocations, the history of
# the directory, no storage jargon and the right singulars and plurals.
. "$(dirname "$0")/audit_lib.sh"

make_log || done_testing
# woonstad, revoked in version 2, tries again with its old key.
PEER_DIR=dir.v2 peer woonstad --timeout-ms 1000 connect-only --listen-ms 300
auth_failures() {
    [ "$("$PEER" audit --db broker/store 2>/dev/null | grep -c '"event":"AUTH_FAILED"')" -ge 2 ]
}
wait_for 10 auth_failures || not_ok "the revoked woonstad's attempt is logged"
stop_broker
check "a real broker run wrote a log and stopped" test "$BRC" -eq 0

# ---- rule and size_bucket only where they apply ------------------------------------

run "$AUDIT" replay --db broker --format jsonl
expect 0 "replay --format jsonl"
jl 'all(r["rule"] is not None and r["size_bucket"] is not None for r in L if r["event"] == "submitted")' \
    "submitted records carry their rule and size bucket"
jl 'any(r["event"] == "rejected" and r["reason"] == "policy" and r["rule"] == 3 and r["size_bucket"] is None for r in L)' \
    "the policy refusal carries its rule 3, no size bucket"
jl 'any(r["event"] == "rejected" and r["reason"] == "sender-mismatch" and r["rule"] is None for r in L)' \
    "a refusal for another reason than the policy has no rule"
jl 'all(r["rule"] is None and r["size_bucket"] is None for r in L if r["event"] in ("delivered", "receipted", "expired", "auth-failed", "directory-installed", "node-connected", "node-disconnected"))' \
    "deliveries, receipts, expiries, connections and directories: rule and size bucket empty (null)"
jl 'len([r for r in L if r["event"] == "delivered"]) == 8' "the 8 deliveries are there"
jl 'len([r for r in L if r["event"] == "auth-failed"]) == 2' "two authentication failures"
jl 'any(r["event"] == "auth-failed" and len(r["node"]) == 64 and r.get("key_of_node") == "woonstad" for r in L)' \
    "the revoked woonstad's attempt: its key, matched to woonstad by its past certificate"
jl 'any(r["event"] == "auth-failed" and len(r["node"]) == 64 and "key_of_node" not in r for r in L)' \
    "the fresh unknown key is matched to no node"

run "$AUDIT" replay --db broker --format csv
expect 0 "replay --format csv"
cp "$T/.out" all.csv
csv_rule() {
    "$PY" - all.csv <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
dl = [r for r in rows if r["event"] in ("delivered", "receipted")]
assert len(dl) == 16, len(dl)
assert all(r["rule"] == "" and r["size_bucket"] == "" for r in dl), dl[0]
assert not any(r["rule"] == "0" for r in rows if r["event"] != "rejected")
pol = [r for r in rows if r["event"] == "rejected" and r["reason"] == "policy"]
assert [r["rule"] for r in pol] == ["3"], pol
sub = [r for r in rows if r["event"] == "submitted"]
assert len(sub) == 9 and all(r["rule"].isdigit() and int(r["size_bucket"]) > 0 for r in sub)
PY
}
check "CSV: delivered and receipted rows have an empty rule and size bucket; a filter on rule 0 finds no delivery" \
    csv_rule

# ---- auth failures of a past certificate's key ------------------------------------

run "$AUDIT" replay --db broker --node woonstad --format jsonl
expect 0 "replay --node woonstad"
jl 'any(r["event"] == "auth-failed" and r.get("key_of_node") == "woonstad" for r in L)' \
    "--node woonstad finds the attempt with the key of its revoked certificate"
jl 'len([r for r in L if r["event"] == "auth-failed"]) == 1' \
    "and not the unknown key's attempt (no node had that key)"
jl "[r['event'] for r in L if r['event'] != 'auth-failed'] == ['submitted', 'expired']" \
    "and the rest as before: the message to it and its expiry"
run "$AUDIT" replay --db broker --node politie-mn --format jsonl
jl 'not any(r["event"] == "auth-failed" for r in L)' "--node politie-mn: no authentication failure"
run "$AUDIT" replay --db broker --node woonstad
stdout_says "woonstad (key " "the text names woonstad for the key"
stdout_says ", of one of its certificates)  [broker's claim]" \
    "a key refused at the door: no reason is recorded, and the text gives none"

# ---- prove: the checkpoint with the most cosignatures, ties the latest ------------

run "$AUDIT" prove --help
stdout_says "the one with the most cosignatures" "prove --help says it picks the most cosigned checkpoint"
check "prove --help says ties go to the latest" grep -q "those with as many, the latest" "$T/.out"
run "$AUDIT" export --db broker --out exp
expect 0 "export"
run "$AUDIT" prove --db exp "$MSG_Q" --out proof.json
expect 0 "prove the query"
choice() {
    "$PY" - exp proof.json <<'PY'
import json, struct, sys
d = sys.argv[1]
raw = open(d + "/keten/checkpoints", "rb").read()
n = int(open(d + "/keten/manifest").read().split("size ")[1])
notes, i = [], 0
while i < len(raw):
    size, ln = struct.unpack(">QI", raw[i:i + 12])
    notes.append((size, raw[i + 12:i + 12 + ln].decode()))
    i += 12 + ln
def sigs(note):
    return len([l for l in note.split("\n\n", 1)[1].split("\n") if l])
p = json.load(open(sys.argv[2]))
last = max(r["leaf_index"] for r in p["records"])
cands = [(sigs(t), s, t) for s, t in notes if last < s <= n]
best = max(c[0] for c in cands)
want = [c for c in cands if c[0] == best][-1]
latest = cands[-1]
print("# chosen size %d with %d signature lines; latest size %d with %d" % (want[1], want[0], latest[1], latest[0]))
sys.exit(0 if p["checkpoint"] == want[2] and best > 1 else 1)
PY
}
check "prove picks, among the checkpoints that cover the message, the latest of those with the most cosignatures" \
    choice
run "$AUDIT" check-proof proof.json --anchor admin/network.pub
expect 0 "the bundle checks"

# ---- the HTML report in a real browser ------------------------------------------

run "$AUDIT" replay --db broker --format jsonl
T_V2=$(jget "[r['time_ms'] for r in L if r['event'] == 'directory-installed'][-1]")
run "$AUDIT" report --db exp --anchor admin/network.pub --out report.html
expect 0 "report --anchor"
run "$AUDIT" report --db exp --anchor admin/network.pub --to "$T_V2" --out before-v2.html
expect 0 "report of the time before version 2"
# The same export with one record changed (a purpose renamed in its bundle).
cp -r exp exp-bad
rename_purpose() {
    "$PY" - exp-bad/tile/entries <<'PY'
import os, sys
d = sys.argv[1]
f = os.path.join(d, sorted(os.listdir(d))[0])
if os.path.isdir(f):
    f = os.path.join(f, sorted(os.listdir(f))[0])
b = open(f, "rb").read()
assert b"handhaving" in b
open(f, "wb").write(b.replace(b"handhaving", b"handhavinq", 1))
PY
}
check "one record of a copy of the export changed" rename_purpose
run "$AUDIT" report --db exp-bad --anchor admin/network.pub --out failed.html
expect 0 "report on the changed export is still written"

# ---- exchanges per purpose and sharing rule -----------------------------------------
# table_rows FILE ID: the rows of the HTML table with that id, read by
# Python's HTML parser (entities decoded), one line per row, cells joined
# by " | ", into FILE.ID.rows.
table_rows() {
    "$PY" - "$1" "$2" >"$1.$2.rows" <<'PY'
import html.parser, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.depth = 0; self.rows = []; self.row = None; self.cell = None
    def handle_starttag(self, tag, a):
        if tag == "table" and dict(a).get("id") == sys.argv[2]: self.depth = 1
        elif tag == "table" and self.depth: self.depth += 1
        if not self.depth: return
        if tag == "tr": self.row = []
        if tag in ("td", "th"): self.cell = []
    def handle_endtag(self, tag):
        if not self.depth: return
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split())); self.cell = None
        if tag == "tr" and self.row is not None: self.rows.append(" | ".join(self.row)); self.row = None
        if tag == "table": self.depth -= 1
    def handle_data(self, d):
        if self.cell is not None: self.cell.append(d)
p = P(); p.feed(open(sys.argv[1]).read())
print("\n".join(p.rows))
PY
}
M='gemeente-diemen (Gemeente Diemen)'
P='politie-mn (Politie Midden-Nederland)'
TX='belastingdienst (Belastingdienst)'
W='woonstad (Woonstad Rotterdam)'
RI='riec-convenant-2024/art-5'
HEAD='Purpose | Policy rule | Sender | Recipient | Messages | Exchanges | Receipted | Refused | Expired'
table_rows report.html purposes
cat >want-purposes <<EOF
$HEAD
handhaving | 1 | $M | $TX | 4 | 4 | 3 | 0 | 0
handhaving | 1 | $M | $P | 2 | 2 | 2 | 0 | 0
$RI | 1 | $M | $TX | 1 | 1 | 1 | 0 | 0
$RI | 1 | $M | $P | 1 | 1 | 1 | 0 | 0
$RI | 1 | $M | $W | 1 | 1 | 0 | 0 | 1
$RI | 2 | $P | $M | 1 | 1 | 1 | 0 | 0
Total | 9 | 10 | 8 | 0 | 1
EOF
check "the table per purpose and rule: a row per purpose, rule and pair (the expired signal to woonstad, the reply under rule 2) and the total" \
    diff -u want-purposes report.html.purposes.rows
in_order() {
    "$PY" - report.html <<'PY'
import sys
s = open(sys.argv[1]).read()
i = s.index('<table id="stats">')
j = s.index("<h2>Exchanges per purpose and sharing rule</h2>")
k = s.index('<table id="purposes">')
sys.exit(0 if i < j < k else 1)
PY
}
check "the table comes after the table per pair, category and month, under its own heading" in_order
# The sharing policy's rules, as the directory versions in the log state
# them (lib.sh's rules 1 and 2, broker_lib.sh's rule 3): version 2 changed
# no rule, so one table covers versions 1 to 2.
POLICY_HEAD='Rule | Effect | From | To | Categories | Kinds | Purposes'
table_rows report.html policy-v1
cat >want-policy <<EOF
$POLICY_HEAD
1 | allow | role:municipality | role:police, role:tax, role:housing | woonfraude, adrescheck | all | all
2 | allow | role:police, role:tax, role:housing | role:municipality | adrescheck | reply, feedback | all
3 | deny | role:municipality | role:housing | woonfraude | all | all
EOF
check "the sharing policy: every rule of version 1 with its effect, parties, categories, kinds and purposes" \
    diff -u want-policy report.html.policy-v1.rows
check "under the heading of the versions it covers" grep -qF "<h3>Directory version 1 to 2 (from " report.html
check "twin: version 2 changed no rule, so it has no table of its own" \
    lacks grep -qF 'id="policy-v2"' report.html
table_rows before-v2.html purposes
check "the report before version 2: the same rows but without version 2's message (3 to belastingdienst)" \
    grep -qxF "handhaving | 1 | $M | $TX | 3 | 3 | 3 | 0 | 0" before-v2.html.purposes.rows
check "and its total counts 8 messages" grep -qxF "Total | 8 | 9 | 8 | 0 | 1" before-v2.html.purposes.rows
# Twin: a period with one purpose, one rule and one pair (the first two
# signals to politie-mn) gives one row.
run "$AUDIT" replay --db exp --format jsonl
T_THIRD=$(jget "sorted(r['time_ms'] for r in L if r['event'] == 'submitted')[2]")
run "$AUDIT" report --db exp --anchor admin/network.pub --to "$T_THIRD" --out one-purpose.html
expect 0 "report of the first two signals only"
table_rows one-purpose.html purposes
printf '%s\n' "$HEAD" "handhaving | 1 | $M | $P | 2 | 2 | 2 | 0 | 0" "Total | 2 | 2 | 2 | 0 | 0" \
    >want-one
check "twin: one purpose under one rule between one pair is one row, and the total" \
    diff -u want-one one-purpose.html.purposes.rows
# A purpose the directory cannot register (HTML-special characters) in a
# record a dishonest operator appended, with a rule number of its own: the
# page shows it escaped, as text, with that number.
cp -a broker odd
run "$AUDIT" replay --db odd --format jsonl
N_ODD=$(jget 'len(L)')
ODD_PURPOSE="<i>x</i>&\"y'"
run "$EDIT" append-submitted --store odd/store --key n-gemeente-diemen/identity.secret \
    --to belastingdienst --network riec-test --directory-version 2 --purpose "$ODD_PURPOSE"
expect 0 "append a submitted record whose purpose holds <, >, &, \" and '"
run "$EDIT" set-rule --store odd/store --leaf "$N_ODD" --rule 7
expect 0 "and give it rule 7"
run "$AUDIT" report --db odd --out odd.html
expect 0 "report on that log"
check "the purpose is escaped in the page, with rule 7" \
    grep -qF '<tr><td>&lt;i&gt;x&lt;/i&gt;&amp;&quot;y&#39;</td><td class="n">7</td>' odd.html
check "no markup from the log in the page" lacks grep -qF "<i>x</i>" odd.html
table_rows odd.html purposes
check "it reads back as the text it was, in a row of its own" \
    grep -qxF "$ODD_PURPOSE | 7 | $M | $TX | 1 | 1 | 0 | 0 | 0" odd.html.purposes.rows

if [ ! -x /usr/bin/chromium ]; then
    not_ok "Chromium renders the report: /usr/bin/chromium is not installed (scripts/deps.sh --test)"
    done_testing
fi
render() { # render NAME: NAME.html to NAME.png (1280x2400) and NAME.dom
    timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --window-size=1280,2400 --screenshot="$T/$1.png" "file://$T/$1.html" \
        >"$1.png.log" 2>&1
    timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu --dump-dom \
        "file://$T/$1.html" >"$1.dom" 2>"$1.dom.log"
}
render report
render before-v2
render failed
# visible NAME: the text a person sees in the rendered DOM, one line per cell
# or paragraph (no style, no title), into NAME.txt.
visible() {
    "$PY" - "$1.dom" >"$1.txt" <<'PY'
import html.parser, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.skip = 0; self.out = []; self.cur = []
    def handle_starttag(self, tag, a):
        if tag in ("style", "title", "script", "head"): self.skip += 1
        if tag in ("tr", "p", "h1", "h2", "dt", "dd", "div", "li", "br"): self.flush()
        if tag in ("td", "th"): self.cur.append(" | ")
    def handle_endtag(self, tag):
        if tag in ("style", "title", "script", "head"): self.skip -= 1
        if tag in ("tr", "p", "h1", "h2", "dd", "div"): self.flush()
    def handle_data(self, d):
        if self.skip == 0: self.cur.append(d)
    def flush(self):
        s = " ".join("".join(self.cur).split())
        if s: self.out.append(s)
        self.cur = []
p = P(); p.feed(open(sys.argv[1]).read()); p.flush()
print("\n".join(p.out))
PY
}
visible report
visible before-v2
visible failed
sees() { # sees NAME PATTERN (extended regex, one line of visible text)
    grep -Eq -- "$2" "$1.txt"
}
check "the rendered report names organisations next to node ids" \
    sees report 'gemeente-diemen \(Gemeente Diemen\)'
check "every partner of the exchanges with its organisation" \
    sees report 'politie-mn \(Politie Midden-Nederland\).*belastingdienst \(Belastingdienst\)|belastingdienst \(Belastingdienst\).*politie-mn \(Politie Midden-Nederland\)'
check "the matrix rows name the organisation too" \
    sees report '^\| gemeente-diemen \(Gemeente Diemen\) \| 5 \| 0 \| 3 \| 1 \|'
check "a section for revocations and key rotations" sees report '^Revocations and key rotations$'
check "it lists woonstad, revoked in version 2, with its organisation and the reason" \
    sees report '^\| woonstad \| Woonstad Rotterdam \| revoked \| [0-9-]+ [0-9:]+ UTC \| left the covenant \| 2$'
check "a section with the history of the directory" sees report '^History of the network directory$'
check "version 1: the first version, its 4 partners added" \
    sees report '^\| 1 \| [0-9-]+ [0-9:]+ UTC \| 4 \| first version\. added .*woonstad \(Woonstad Rotterdam\)'
check "version 2: 3 partners left, woonstad revoked" \
    sees report '^\| 2 \| [0-9-]+ [0-9:]+ UTC \| 3 \| revoked woonstad \(Woonstad Rotterdam\) as of .*left the covenant'
check "no storage jargon (LMDB, mdb, leaf) anywhere in the page" \
    lacks grep -Eiq 'lmdb|mdb|leaf' report.txt report.html
check "plural: 2 authentication failures" sees report '2 authentication failures'
check "singular: 1 expiry, not 1 expiries" sees report '1 expiry,'
check "no number 1 with a plural noun" lacks grep -Eq '(^|[^0-9])1 (expiries|deliveries|authentication failures|rejections|connections|receipts|checkpoints|batches)' report.txt
check "the report before version 2: 1 authentication failure (singular)" \
    sees before-v2 '^1 authentication failure \(connections'
check "the directory history is the whole log's, whatever the period: woonstad's revocation is listed" \
    sees before-v2 'woonstad \| Woonstad Rotterdam \| revoked'
check "the changed log's report says in plain words where verification failed" \
    sees failed '^Verification FAILED at record [0-9]+ of the log\. The log was changed there'
check "and no storage jargon there either" lacks grep -Eiq 'lmdb|mdb' failed.txt
png_ok() { # png_ok FILE W H: a PNG of that size whose pixels are not all one colour
    "$PY" - "$@" <<'PY'
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (int(sys.argv[2]), int(sys.argv[3])), (w, h)
i, data = 8, b""
while i < len(b):
    ln, typ = struct.unpack(">I4s", b[i:i + 8])
    if typ == b"IDAT": data += b[i + 8:i + 8 + ln]
    i += 12 + ln
raw = zlib.decompress(data)
assert len(set(raw)) > 32, "a blank image"
PY
}
axis_even() { # the chart's axis: 0, s, 2s, ... with s 1, 2 or 5 times a power of ten
    "$PY" - report.html <<'PY'
import re, sys
svg = open(sys.argv[1]).read().split('<svg id="chart"', 1)[1].split("</svg>", 1)[0]
ticks = [int(t) for t in re.findall(r'text-anchor="end">(\d+)</text>', svg)]
bars = [int(h) for h in re.findall(r'<rect [^>]*height="(\d+)"', svg)]
print("# axis", ticks)
s = ticks[1] - ticks[0] if len(ticks) > 1 else 0
assert len(ticks) >= 2 and ticks[0] == 0 and s > 0, ticks
assert ticks == [k * s for k in range(len(ticks))], ticks
assert str(s).rstrip("0") in ("1", "2", "5"), s
assert bars and max(bars) > 0
PY
}
check "the bar chart's axis is labelled in even steps of 1, 2 or 5" axis_even
check "the screenshot is a 1280x2400 PNG with something drawn on it" png_ok report.png 1280 2400
check "the screenshot is more than a few bytes" test "$(stat -c %s report.png)" -gt 20000

# ---- the directory history names changes of administrators and policy ------------
# Version 3 changes the administrators (two new ones, both must sign) and the
# policy; the broker installs it, and the report of a new export says so.
# Version 2 changed neither: its row names only the revocation.
for who in x y; do
    secret "pass-$who" "the passphrase of new administrator $who"
    run "$KEYS" admin-keygen --out "$who.secret" --name "New administrator $who" --passphrase-file "pass-$who"
    expect 0 "admin-keygen for new administrator $who"
done
run "$KEYS" set-admins --dir admin --threshold 2 --admin-pub x.secret.pub,y.secret.pub
expect 0 "set-admins: two new administrators, both must sign"
run "$KEYS" policy --dir admin allow --from role:tax --to role:police --category drugs
expect 0 "a policy rule more"
publish dir.v3 || done_testing
for who in x y; do
    run "$KEYS" sign --dir admin dir.v3 --key "$who.secret" --passphrase-file "pass-$who"
    expect 0 "new administrator $who signs version 3"
done
BROKER_DIR=dir.v3 start_broker || done_testing
wait_for 10 grep -q 'msg="directory installed" version=3' "$BLOG" \
    || not_ok "the broker installs version 3"
stop_broker
run "$AUDIT" export --db broker --out exp3
expect 0 "export after version 3"
run "$AUDIT" report --db exp3 --anchor admin/network.pub --out admins.html
expect 0 "report after version 3"
row_of() { # row_of VERSION: the directory history's row of that version, as HTML
    grep -o "<tr><td class=\"n\">$1</td><td>[^<]*</td><td class=\"n\">[0-9]*</td><td>.*</td></tr>" \
        admins.html | head -n 1
}
row3=$(row_of 3)
row2=$(row_of 2)
check "the report's history has a row for version 3" test -n "$row3"
check "version 3's row says the administrators changed, how many must sign, and how it was" \
    grep -qF "<strong>administrators changed</strong>: now 2, of whom 2 must sign each version (before: 3, of whom 2)" <<<"$row3"
check "version 3's row says the sharing policy changed" grep -qF "the sharing policy changed (now " <<<"$row3"
check "version 3's row does not call it no change" lacks grep -qF "no change" <<<"$row3"
check "twin: version 2's row names the revocation" grep -qF "revoked woonstad" <<<"$row2"
check "twin: version 2's row names no change of administrators or policy" \
    lacks grep -Eq "administrators changed|policy changed" <<<"$row2"
check "version 1's row says who must sign from the start" \
    grep -qF "3 administrators, of whom 2 must sign each version" <<<"$(row_of 1)"
table_rows admins.html policy-v3
{ cat want-policy; echo '4 | allow | role:tax | role:police | drugs | all | all'; } >want-policy3
check "version 3 changed the policy: its rules in a table of their own, the new rule 4 among them" \
    diff -u want-policy3 admins.html.policy-v3.rows
check "under its own heading" grep -qF "<h3>Directory version 3 (from " admins.html
table_rows admins.html policy-v1
check "twin: the table of versions 1 to 2 is still there, without rule 4" \
    diff -u want-policy admins.html.policy-v1.rows

done_testing
