#!/usr/bin/env bash
# demo.sh - the README's four-partner demonstration (scripts/demo-network.sh)
# runs to the end, says every step in plain words, and its check that the
# broker never holds the signal's words can fail.
#
# Arguments: keten-keys keten-node keten-broker keten-test-tool keten-audit
# lib.sh changes into a temporary folder: resolve these paths first.
AUDIT=$(realpath "${5:?keten-audit path}")
DEMO=$(realpath "$(dirname "$0")/../../scripts/demo-network.sh")
. "$(dirname "$0")/lib.sh"
WORDS=("ramen afgeplakt" "9 personen" "Hoofdstraat 1")

KEPT=
trap 'rm -rf "$T"; [ -z "$KEPT" ] || rm -rf "$KEPT"' EXIT

# 1. With --keep: the whole demonstration, and the folder left for a look.
run "$DEMO" --keep "$KEYS" "$NODE" "$BROKER" "$AUDIT"
cp "$T/.all" "$T/demo.out"
# The plain-words paragraphs are wrapped to fit a terminal: their phrases are
# looked for in the output with every run of spaces and line breaks as one space.
tr -s ' \n' '  ' <"$T/demo.out" >"$T/demo.flat"
# tells TEXT WHAT: the output, so flattened, contains TEXT.
tells() {
    check "$2" grep -qF -- "$1" "$T/demo.flat"
}
expect 0 "the demonstration runs to the end"
says "The demonstration did everything it said." "it says it did everything it said"
says_not "FAILED" "no step failed"
says_not "data.mdb" "no store file name is shown"
says_not "LMDB" "no storage library is named"

# Every numbered step has its plain-words sentence before the next step.
steps=$(grep -cE '^[0-9]+\. ' "$T/demo.out")
bare=$(awk '/^[0-9]+\. /{ if (n && !p) print n; n=$1; p=0 } /^   In plain words: /{ p=1 }
    END { if (n && !p) print n }' "$T/demo.out")
check "19 steps ($steps)" test "$steps" -eq 19
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
tells "a checkpoint is the broker's signed statement of how long its audit log is" \
    "step 14 explains the checkpoint"
says "records 0 to " "step 16: the police's checkpoint covers the history"
tells "an exchange is one" "step 18 explains exchanges"
tells "5 messages, 8 exchanges in all." "step 18 counts them as the table does"
check "the statistics' totals are 5 messages and 8 exchanges" \
    grep -qE '^   total +5 +8 ' "$T/demo.out"

KEPT=$(sed -n "s/^The network's folder is kept: //p" "$T/demo.out")
require "the kept folder's path is printed" test -n "$KEPT"
check "the folder is kept, with the broker's home and the audit export" \
    test -d "$KEPT/broker" -a -d "$KEPT/audit-export" -a -f "$KEPT/politie-checkpoint.note"
says "Remove it with: rm -rf $KEPT" "it says how to remove it"
check "the broker's home holds files" test -n "$(find "$KEPT/broker" -type f -size +0)"
check "no sanitizer report in the daemons' logs" \
    lacks grep -lE 'AddressSanitizer|LeakSanitizer|runtime error' "$KEPT/broker.log" \
    "$KEPT/node-gemeente.log" "$KEPT/node-politie.log" "$KEPT/node-belastingdienst.log" \
    "$KEPT/node-woningcorporatie.log"

pids=$(sed -n 's/^   all processes stopped: //p' "$T/demo.out")
check "it lists the processes it started (6: the broker, 4 nodes, a restart)" \
    test "$(wc -w <<<"$pids")" -eq 6
for pid in $pids; do
    check "process $pid is no longer running" lacks kill -0 "$pid"
done

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

# 3. Without --keep the folder is removed, and nothing says it was kept.
run "$DEMO" "$KEYS" "$NODE" "$BROKER" "$AUDIT"
expect 0 "the demonstration without --keep runs to the end"
says_not "is kept" "it does not say the folder was kept"
gone=$(sed -n 's/^keten demonstration, in //p' "$T/.all")
check "it names its folder" test -n "$gone"
check "its folder is removed" lacks test -e "$gone"

done_testing
