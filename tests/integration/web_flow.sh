#!/usr/bin/env bash
# The node's web page in a real browser (tests/web/web_flow.py), on a real
# network: the broker and three nodes (gemeente-diemen, politie-mn,
# belastingdienst), each serving its HTTP API and the page on
# --api-listen 127.0.0.1:PORT with --web-root the source tree's web/.
#
# web_flow.py makes an application token for a clerk at the municipality
# and one for an analyst at the police (POST /v1/tokens on HOME/api.sock),
# signs each in with it in its own headless Chromium, and goes through the
# screens: the clerk records a signal to the police (mistakes first: no
# recipient and no grading, both named at once in Dutch next to their
# fields; the node's English text only as a technical detail), the analyst
# sees it arrive live, opens, acknowledges and gives feedback (first on a
# category the agreement refuses: said in Dutch, and in English after
# switching, with no field marked); the clerk follows it (receipt,
# feedback); a query to police and tax, the police's reply, and the
# follow-up naming tax as not replied yet; a query answered (in the page, or
# outside it on the node's socket) said to be answered, with a link to the
# reply and no reply button (twin: an unanswered one offers it); the language
# switched with a form open: its labels, buttons and problems follow, what
# was typed stays. axe-core (tests/web/package.json, installed by
# scripts/deps.sh --test) checks every screen: zero violations of WCAG 2.1
# A and AA. Also: CSRF (no header, a wrong one, another Origin: 403; the
# right one: 200), the security headers, no content or subject in any URL
# the browsers requested nor in the access logs, logout (401 after), a
# session ended elsewhere shown as ended, English, a read-only token (no
# change offered, a send's check refused 403).
#
# Every check of web_flow.py ("PASS what" / "FAIL what: why") becomes one TAP
# line here. KETEN_WEB_SCREENSHOTS=DIR (absolute) saves the main screens
# there as PNGs (docs/web/ holds the ones docs/web.md shows).
#
#   web_flow.sh KEYS NODE BROKER TOOL FAKEBROKER TAMPER WEB_FLOW_PY WEB_ROOT AXE_JS
. "$(dirname "$0")/node_lib.sh"

FLOW=$(realpath "${7:?web_flow.py}")
WEB=$(realpath "${8:?web root}")
AXE=${9:?axe.min.js of axe-core}
FLOW_CHECKS_MIN=157 # web_flow.py makes 163 checks: fewer means it stopped early

need_tool chromium chromedriver
if ! "$PY" -c 'import selenium' 2>/dev/null; then
    echo "Bail out! not installed: python3-selenium (scripts/deps.sh --test installs what the tests call)"
    exit 1
fi
if [ ! -f "$AXE" ]; then
    echo "Bail out! not installed: axe-core in $AXE (scripts/deps.sh --test runs npm ci in tests/web)"
    exit 1
fi
# The version checked is the one tests/web/package.json pins.
AXE_PINNED=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["dependencies"]["axe-core"])' \
    "$(dirname "$FLOW")/package.json")
AXE_FOUND=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
    "$(dirname "$AXE")/package.json")
require "axe-core is the version tests/web/package.json pins ($AXE_PINNED, found $AXE_FOUND)" \
    test "$AXE_FOUND" = "$AXE_PINNED"

make_network admin || done_testing
# The police may give feedback on a woonfraude signal (the network allows
# replies and feedback on adrescheck only).
run "$KEYS" policy --dir admin allow --from role:police --to role:municipality \
    --category woonfraude --kind feedback
require "policy: the police may give feedback on woonfraude" test "$RC" -eq 0
publish_dir admin directory.signed || done_testing

start_broker
declare -A PORT=()
for id in gemeente-diemen politie-mn belastingdienst; do
    PORT[$id]=$(free_port)
    start_node "$id" --api-listen "127.0.0.1:${PORT[$id]}" --web-root "$WEB"
done
# api_up ID: the node is connected to the broker and serves HTTP on its
# port; the end of its log as TAP comments when not.
api_up() {
    wait_until 30 connected "$1" && wait_until 30 port_open "${PORT[$1]}" && return 0
    tail -n 20 "$T/node-$1.log" | sed 's/^/# /'
    return 1
}
for id in gemeente-diemen politie-mn belastingdienst; do
    require "$id is connected and serves HTTP on 127.0.0.1:${PORT[$id]} (--api-listen)" api_up "$id"
done

if [ -n "${KETEN_WEB_SCREENSHOTS:-}" ]; then
    # The script runs in its temporary directory: a relative path would
    # put the pictures there, removed at the end.
    case "$KETEN_WEB_SCREENSHOTS" in
    /*) mkdir -p "$KETEN_WEB_SCREENSHOTS" ;;
    *)
        echo "Bail out! KETEN_WEB_SCREENSHOTS=$KETEN_WEB_SCREENSHOTS: give an absolute path"
        exit 1
        ;;
    esac
fi
"$PY" "$FLOW" --axe "$AXE" \
    --node "gemeente-diemen:$T/n-gemeente-diemen:${PORT[gemeente-diemen]}" \
    --node "politie-mn:$T/n-politie-mn:${PORT[politie-mn]}" \
    --node "belastingdienst:$T/n-belastingdienst:${PORT[belastingdienst]}" \
    >"$T/flow.out" 2>"$T/flow.err"
FLOW_RC=$?

n=0
while read -r verdict what; do
    check "$what" test "$verdict" = PASS
    n=$((n + 1))
done < <(grep -E '^(PASS|FAIL) ' "$T/flow.out")
check "web_flow.py made all its checks ($n, at least $FLOW_CHECKS_MIN)" test "$n" -ge "$FLOW_CHECKS_MIN" \
    || sed 's/^/# /' "$T/flow.err"
check "web_flow.py exited 0 (every check passed)" test "$FLOW_RC" -eq 0 \
    || sed 's/^/# /' "$T/flow.err" | tail -20

finish
