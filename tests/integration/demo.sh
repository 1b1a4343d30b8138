#!/usr/bin/env bash
# demo.sh - the README's four-partner demonstration (scripts/demo-network.sh)
# runs to the end, says every step in plain words, and its check that the
# broker never holds the signal's words can fail. Its web page step signs a
# clerk and an analyst in; with --keep the network runs on until SIGINT,
# and the address and token it prints open the page and a session; after
# SIGINT every process it started is gone and its folder is kept.
#
# Arguments: keten-keys keten-node keten-broker keten-test-tool keten-audit
# lib.sh changes into a temporary folder: resolve these paths first.
AUDIT=$(realpath "${5:?keten-audit path}")
DEMO=$(realpath "$(dirname "$0")/../../scripts/demo-network.sh")
. "$(dirname "$0")/lib.sh"
need_tool curl env
WORDS=("ramen afgeplakt" "9 personen" "Hoofdstraat 1")
MARK="Press Ctrl-C to stop the network."
CSP="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

KEPT=
KPID=
# On the way out: a demonstration still running (a check failed before
# SIGINT) is stopped by its pid, then its folder removed.
stop_demo() {
    [ -n "$KPID" ] || return 0
    kill -TERM "$KPID" 2>/dev/null
    wait_for 60 grep -qF "Remove it with: rm -rf" "$T/keep.out" || kill -KILL "$KPID" 2>/dev/null
    wait "$KPID" 2>/dev/null
    KPID=
}
trap 'stop_demo; rm -rf "$T"; [ -z "$KEPT" ] || rm -rf "$KEPT"' EXIT

# tells TEXT WHAT: the last demonstration's output, with every run of spaces
# and line breaks as one space (the plain-words paragraphs are wrapped to fit
# a terminal), contains TEXT.
tells() {
    check "$2" grep -qF -- "$1" "$T/demo.flat"
}
# web_step: the checks of the web page step, on the last demonstration's
# output ($T/.all, $T/demo.out and $T/demo.flat).
web_step() {
    check "step 7 prints the municipality's web address" \
        grep -qE "^   the municipality's node serves its web page at http://127\.0\.0\.1:[0-9]+/,$" "$T/demo.out"
    check "and the police's" grep -qE "^   the police's at http://127\.0\.0\.1:[0-9]+/ " "$T/demo.out"
    check "step 14 is the web page" \
        grep -qxF "14. The web page: a clerk at the municipality and an analyst at the police sign in." "$T/demo.out"
    check "it shows the clerk's and the analyst's tokens" \
        test "$(grep -cE "^     the (clerk|analyst)'s, for http://127\.0\.0\.1:[0-9]+/   ktn_[A-Za-z0-9_-]{43}$" "$T/demo.out")" -eq 2
    tells "the municipality's page answers (HTTP 200), with the rule that it runs only its own" \
        "the page answered with its Content-Security-Policy"
    says "the clerk signs in: the node opens a session" "the clerk's token opened a session"
    says "and with it the page lists the clerk's inbox: the three answers to the query" \
        "the session reached the inbox"
    tells "with the clerk's session: refused (HTTP 403)" "another site's request was refused"
    says "the clerk signs out; the same cookie then opens nothing (HTTP 401)" "signing out ends it"
    says "the analyst's token does not open the municipality's page (HTTP 401)" \
        "a token of another node is refused"
    says "the analyst signs in at the police's page and sees the signal and the query" \
        "the analyst's session reached the police's inbox"
    tells "the municipality's access log has a line for each of these requests: 4 for the clerk, 3 refused" \
        "the access log names the clerk's requests and the refused ones"
    tells "sign in with the organisation's own single sign-on instead: a reverse proxy" \
        "it says who signs in how"
    tells "so it works without internet" "it says the page works without internet"
}
# gone_all: the processes the last demonstration listed as stopped (6: the
# broker, 4 nodes, the police's restart) are no longer running.
gone_all() {
    local pids pid
    pids=$(sed -n 's/^   all processes stopped: //p' "$T/demo.out")
    check "it lists the processes it started (6: the broker, 4 nodes, a restart)" \
        test "$(wc -w <<<"$pids")" -eq 6
    for pid in $pids; do
        check "process $pid is no longer running" lacks kill -0 "$pid"
    done
}

# 1. With --keep, in the background until it says the network runs on. A
# script started with & ignores SIGINT; env --default-signal gives it
# SIGINT as a terminal's Ctrl-C does.
setsid env --default-signal=INT "$DEMO" --keep "$KEYS" "$NODE" "$BROKER" "$AUDIT" \
    </dev/null >"$T/keep.out" 2>&1 &
KPID=$!
ready_or_ended() { grep -qF "$MARK" "$T/keep.out" || ! kill -0 "$KPID" 2>/dev/null; }
wait_for 180 ready_or_ended
cp "$T/keep.out" "$T/.all"
require "with --keep it keeps the network running: \"$MARK\"" grep -qxF "$MARK" "$T/keep.out"
KEPT=$(sed -n 's/^keten demonstration, in //p' "$T/keep.out")
require "the pid signalled is the demonstration's" grep -qF demo-network.sh "/proc/$KPID/cmdline"
read -r URL_G TOK_G < <(sed -nE 's/^     the municipality \(the clerk\): +(http:[^ ]+) +(ktn_[^ ]+)$/\1 \2/p' "$T/keep.out")
read -r URL_P TOK_P < <(sed -nE 's/^     the police \(the analyst\): +(http:[^ ]+) +(ktn_[^ ]+)$/\1 \2/p' "$T/keep.out")
require "it prints the municipality's address and the clerk's token" \
    test -n "${URL_G:-}" -a -n "${TOK_G:-}"
require "and the police's address and the analyst's token" test -n "${URL_P:-}" -a -n "${TOK_P:-}"
G=${URL_G%/}
G=${G#http://}
P=${URL_P%/}
P=${P#http://}
says "ssh -L ${G#127.0.0.1:}:$G " "it says how to reach the municipality's page from another machine"
says "ssh -L ${P#127.0.0.1:}:$P " "and the police's"

# web HOST:PORT METHOD PATH [CURL ARGS...]: as a browser on this machine
# asks it (Host the address); CODE the status, $T/.hdr the headers,
# $T/.out the body.
web() {
    local hp=$1 method=$2 path=$3
    shift 3
    CODE=$(curl -sS --max-time 20 -X "$method" -H "Host: $hp" -D "$T/.hdr" -o "$T/.out" \
        -w '%{http_code}' "$@" "http://$hp$path" 2>"$T/.err")
    cat "$T/.out" "$T/.err" >"$T/.all"
}
header() { tr -d '\r' <"$T/.hdr" | grep -qixF -- "$1: $2"; }
session() { # session HOST:PORT TOKEN: POST /v1/session as the page sends it
    web "$1" POST /v1/session -H "Origin: http://$1" \
        -H 'Content-Type: application/json; charset=utf-8' --data-binary "{\"token\":\"$2\"}"
}
web "$G" GET /
check "the printed address answers GET / (HTTP $CODE)" test "$CODE" = 200
check "with the page" grep -qi '<html' "$T/.out"
check "and the Content-Security-Policy" header Content-Security-Policy "$CSP"
session "$G" "$TOK_G"
check "the printed clerk's token opens a session (HTTP $CODE)" test "$CODE" = 201
check "as the clerk" grep -qE '"actor": *"token:clerk"' "$T/.out"
COOKIE=$(tr -d '\r' <"$T/.hdr" | sed -nE 's/^[Ss]et-[Cc]ookie: *(keten_session=[A-Za-z0-9_-]{43});.*HttpOnly; SameSite=Strict.*/\1/p')
check "its cookie is HttpOnly and SameSite=Strict" test -n "$COOKIE"
web "$G" GET /v1/inbox -H "Cookie: $COOKIE"
check "the session's cookie opens the clerk's inbox (HTTP $CODE)" test "$CODE" = 200
check "with the three answers to the query" test "$(grep -o '"in_reply_to": *"[0-9a-f]\{32\}"' "$T/.out" | wc -l)" -eq 3
web "$G" GET /v1/inbox -H "Cookie: keten_session=$(printf 'A%.0s' $(seq 43))"
check "a made-up cookie opens nothing (HTTP $CODE)" test "$CODE" = 401
session "$G" "$TOK_P"
check "the police's token does not open the municipality's page (HTTP $CODE)" test "$CODE" = 401
session "$P" "$TOK_P"
check "the printed analyst's token opens the police's page (HTTP $CODE)" test "$CODE" = 201
check "the demonstration still runs" kill -0 "$KPID"

kill -INT "$KPID"
check "after SIGINT it stops the network and ends (within 60 s)" \
    wait_for 60 grep -qF "Remove it with: rm -rf" "$T/keep.out"
wait "$KPID"
# shellcheck disable=SC2034 # expect (lib.sh) reads it
RC=$?
KPID=
cp "$T/keep.out" "$T/.all"
cp "$T/keep.out" "$T/demo.out"
tr -s ' \n' '  ' <"$T/demo.out" >"$T/demo.flat"
expect 0 "the demonstration with --keep ends well after SIGINT"
says "The demonstration did everything it said." "it says it did everything it said"
says_not "FAILED" "no step failed"
says_not "data.mdb" "no store file name is shown"
says_not "LMDB" "no storage library is named"
check "after \"$MARK\" comes the step that stops everything" \
    grep -qxF "21. Everything stops." <(sed -n "/^$MARK\$/,\$p" "$T/demo.out")
gone_all
# refused URL: curl cannot connect to it (exit 7), nothing listens there.
refused() {
    curl -sS --max-time 5 -o /dev/null "$1" 2>/dev/null
    [ $? -eq 7 ]
}
check "nothing answers on the municipality's address any more" refused "$URL_G"
check "nor on the police's" refused "$URL_P"
# in_folder DIR: a process still works in DIR, where the demonstration
# started everything, also what it waited on (exit 0), or none does (1).
in_folder() {
    local p dir
    dir=$(realpath "$1") || return 2
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/cwd" 2>/dev/null)" = "$dir" ] && return 0
    done
    return 1
}
check "no process is left in the demonstration's folder" lacks in_folder "$KEPT"

# Every numbered step has its plain-words sentence before the next step.
steps=$(grep -cE '^[0-9]+\. ' "$T/demo.out")
bare=$(awk '/^[0-9]+\. /{ if (n && !p) print n; n=$1; p=0 } /^   In plain words: /{ p=1 }
    END { if (n && !p) print n }' "$T/demo.out")
check "21 steps with --keep ($steps)" test "$steps" -eq 21
check "every step says what it means in plain words${bare:+ (not: $bare)}" test -z "$bare"

says "what the broker received and keeps of it, record" "step 8 shows the broker's record of the signal"
check "step 8 shows the record's bytes (hexadecimal)" \
    grep -qE '^     0000000 ([0-9a-f]{2} ){16} >' "$T/demo.out"
says "what the police read, decrypted with their own key:" "step 8 shows the plaintext next to it"
tells "checked: none of the words \"ramen afgeplakt\", \"9 personen\" or \"Hoofdstraat 1\"" \
    "step 8 checked that the signal's words are not in the broker's files"
tells "'accepted (audit leaf " "step 12 explains the audit leaf"
tells "(inclusion proven)" "step 12 says the inclusion was proven"
tells "In plain words: 'rule 0' means that no rule of the agreement allows it" \
    "step 13 explains rule 0"
web_step
tells "a checkpoint is the broker's signed statement of how long its audit log is" \
    "step 15 explains the checkpoint"
says "records 0 to " "step 17: the police's checkpoint covers the history"
tells "an exchange is one" "step 19 explains exchanges"
tells "5 messages, 8 exchanges in all." "step 19 counts them as the table does"
check "the statistics' totals are 5 messages and 8 exchanges" \
    grep -qE '^   total +5 +8 ' "$T/demo.out"

require "the kept folder's path is printed" test -n "$KEPT"
check "it says the folder is kept" grep -qxF "The network's folder is kept: $KEPT" "$T/demo.out"
check "the folder is kept, with the broker's home and the audit export" \
    test -d "$KEPT/broker" -a -d "$KEPT/audit-export" -a -f "$KEPT/politie-checkpoint.note"
says "Remove it with: rm -rf $KEPT" "it says how to remove it"
check "the broker's home holds files" test -n "$(find "$KEPT/broker" -type f -size +0)"
check "the municipality's access log has the session this test opened with the printed token" \
    test "$(grep -c '"actor": *"token:clerk".*"action": *"session-open"' "$KEPT/gemeente/access.log")" -eq 2
check "no sanitizer report in the daemons' logs" \
    lacks grep -lE 'AddressSanitizer|LeakSanitizer|runtime error' "$KEPT/broker.log" \
    "$KEPT/node-gemeente.log" "$KEPT/node-politie.log" "$KEPT/node-belastingdienst.log" \
    "$KEPT/node-woningcorporatie.log"

# 2. Step 8's check, alone: the broker's files of the kept network answer
# "absent"; the same files with the words planted in one of them answer
# "present" and name it; the signal as the municipality wrote it holds the
# words; a path that does not exist is "could not look", not "absent".
run "$DEMO" --check-absent "$KEPT/broker" "$KEPT/broker.log" -- "${WORDS[@]}"
expect 0 "the kept broker's files hold none of the signal's words"
cp -a "$KEPT/broker" planted
victim=$(find planted -type f -size +0 | LC_ALL=C sort | tail -1)
printf 'x Adres staat op naam van 9 personen; ramen afgeplakt x' >>"$victim"
run "$DEMO" --check-absent planted -- "${WORDS[@]}"
expect 1 "the same files with the words planted in one: present"
says "$victim" "the file that holds them is named"
run "$DEMO" --check-absent "$KEPT/signal.json" -- "${WORDS[@]}"
expect 1 "the signal as written holds the words the check looks for"
run "$DEMO" --check-absent "$KEPT/no-such-folder" -- "${WORDS[@]}"
expect 2 "a path that does not exist: could not look"

# 3. Without --keep it ends by itself and stops everything: its web page
# step passes, nothing is left running, the folder is removed and nothing
# says it was kept.
run "$DEMO" "$KEYS" "$NODE" "$BROKER" "$AUDIT"
expect 0 "the demonstration without --keep runs to the end"
cp "$T/.all" "$T/demo.out"
tr -s ' \n' '  ' <"$T/demo.out" >"$T/demo.flat"
says "The demonstration did everything it said." "it says it did everything it said"
says_not "FAILED" "no step failed"
says_not "$MARK" "it does not wait for Ctrl-C"
check "20 steps without --keep" test "$(grep -cE '^[0-9]+\. ' "$T/demo.out")" -eq 20
check "the last is the step that stops everything" \
    test "$(grep -E '^[0-9]+\. ' "$T/demo.out" | tail -1)" = "20. Everything stops."
web_step
gone_all
says_not "is kept" "it does not say the folder was kept"
gone=$(sed -n 's/^keten demonstration, in //p' "$T/.all")
check "it names its folder" test -n "$gone"
check "its folder is removed" lacks test -e "$gone"

done_testing
