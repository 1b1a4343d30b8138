# shellcheck shell=bash
#
# fault_lib.sh - helpers for the fault tests, on top of node_lib.sh: a
# network of three sending municipalities and two recipients (police and
# tax) with the real keten-broker and keten-node daemons on ipc:// sockets,
# a steady background load of signals, a seeded random number generator,
# draining, and the exactly-once check of what was sent against what the
# recipients' inboxes hold.
#
# Arguments: node_lib.sh's six (keten-keys keten-node keten-broker
# keten-test-tool keten-fakebroker keten-tamper), then keten-audit.

# Every fault test checks the broker's log with keten-audit: without it the
# test fails at once (a check that cannot run does not pass).
if [ -z "${7:-}" ] || [ ! -x "$7" ]; then
    echo "Bail out! keten-audit must be the seventh argument (got '${7:-}')"
    exit 1
fi
AUDIT=$(realpath "$7")

. "$(dirname "$0")/node_lib.sh"

# The partners (lib.sh's make_network enrols these) and who plays which part.
PARTNERS="gemeente-diemen:municipality:Gemeente Diemen
gemeente-almere:municipality:Gemeente Almere
gemeente-zaanstad:municipality:Gemeente Zaanstad
politie-mn:police:Politie Midden-Nederland
belastingdienst:tax:Belastingdienst"
SENDERS="gemeente-diemen gemeente-almere gemeente-zaanstad"
RECIPIENTS="politie-mn belastingdienst"
NODES="$SENDERS $RECIPIENTS"
TO="politie-mn,belastingdienst"

declare -A LOAD=()  # sender -> pid of its background load loop

stop_load() {
    local id
    touch "$T/stop-load"
    for id in "${!LOAD[@]}"; do
        for _ in $(seq 1 200); do
            kill -0 "${LOAD[$id]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${LOAD[$id]}" 2>/dev/null
        wait "${LOAD[$id]}" 2>/dev/null
        unset "LOAD[$id]"
    done
}

trap 'stop_load; stop_all; rm -rf "$T"' EXIT

# seed_random: take the seed from KETEN_FAULT_SEED or make one, print it so
# that a run can be repeated, and seed bash's RANDOM with it.
seed_random() {
    SEED=${KETEN_FAULT_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
    case $SEED in
    '' | *[!0-9]*)
        echo "# KETEN_FAULT_SEED must be a number, not '$SEED'"
        exit 2
        ;;
    esac
    echo "# seed $SEED (repeat this run with KETEN_FAULT_SEED=$SEED)"
    RANDOM=$SEED
}

# wait_slowly SECONDS CMD...: like wait_until, for slow conditions: retry CMD
# every 0.5 s until it succeeds or SECONDS have passed since the first try.
wait_slowly() {
    local end=$((SECONDS + $1))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.5
    done
}

# rand_delay MIN_MS MAX_MS: set DELAY to a random duration in seconds (for
# sleep). Not in $(...): bash reseeds RANDOM in subshells, which would make
# a run unrepeatable.
rand_delay() {
    local ms=$(($1 + RANDOM % ($2 - $1 + 1)))
    # shellcheck disable=SC2034 # for the scripts
    printf -v DELAY '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# setup_fault_network: the network of PARTNERS with lib.sh's policy
# (municipalities may send woonfraude signals to police and tax), published
# as directory.signed, and the signal the load sends.
setup_fault_network() {
    make_network admin || return 1
    publish_dir admin directory.signed || return 1
    signal sig.json woonfraude "Melding onder foutcondities"
}

# broker_runs: how many times a broker said it was running (broker.log).
broker_runs() {
    local n
    n=$(grep -c 'broker running' "$T/broker.log" 2>/dev/null)
    echo "${n:-0}"
}

# broker_up_since N: a broker started after the Nth "broker running" line
# says it is running.
broker_up_since() {
    [ "$(broker_runs)" -gt "$1" ]
}

# wait_broker_up N SECONDS: wait (polling every 50 ms) until a broker
# started after the Nth "broker running" line says it is running.
wait_broker_up() {
    local end=$((SECONDS + $2))
    until broker_up_since "$1"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.05
    done
}

# now_ms: the wall clock in milliseconds; ms_since T: milliseconds since T,
# as seconds with two decimals.
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}
ms_since() {
    local d=$(($(now_ms) - $1))
    printf '%d.%02d' $((d / 1000)) $((d % 1000 / 10))
}

# start_all: the broker and every node; each node connected.
start_all() {
    local id
    start_broker
    for id in $NODES; do
        start_node "$id"
    done
    check "the broker and the nodes ($NODES) are running and connected" all_connected
}

# all_connected: every node connects to the broker within 30 s.
all_connected() {
    local id
    for id in $NODES; do
        wait_until 30 connected "$id" || {
            echo "# $id did not connect to the broker in 30 s"
            return 1
        }
    done
}

# load_loop ID PERIOD: send the signal from ID to both recipients every
# PERIOD seconds until $T/stop-load exists. Every msg_id that send printed
# (the message is then durable in the sender's outbox) goes to $T/sent-ID,
# every failed send is counted in $T/fail-ID (its error in $T/send-ID.err).
load_loop() {
    local id=$1 period=$2 out
    : >"$T/sent-$id"
    : >"$T/fail-$id"
    while [ ! -e "$T/stop-load" ]; do
        # --timeout 1: a send whose daemon is killed while it asks gives up
        # after 16 s, not 45 s (the message may still be in the outbox).
        if out=$("$NODE" send --home "n-$id" --to "$TO" --signal "$T/sig.json" --timeout 1 \
            </dev/null 2>>"$T/send-$id.err"); then
            echo "$out" >>"$T/sent-$id"
        else
            echo x >>"$T/fail-$id"
        fi
        sleep "$period"
    done
}

# start_load PERIOD [SENDER...]: a load loop per sender (default: all).
start_load() {
    local period=$1 id ids
    shift
    ids=${*:-$SENDERS}
    rm -f "$T/stop-load"
    for id in $ids; do
        load_loop "$id" "$period" &
        LOAD[$id]=$!
    done
}

sent_count() {
    cat "$T"/sent-* 2>/dev/null | grep -c .
}

fail_count() {
    cat "$T"/fail-* 2>/dev/null | grep -c .
}

# outboxes_empty: every running sender's outbox is empty.
outboxes_empty() {
    local id
    for id in $SENDERS; do
        node_status_is "$id" 'd["outbox"] == 0' || return 1
    done
}

# inbox_total: the number of entries in all recipients' inboxes.
inbox_total() {
    local id n=0 c
    for id in $RECIPIENTS; do
        c=$("$NODE" inbox --home "n-$id" --json --all 2>/dev/null | grep -c .)
        n=$((n + c))
    done
    echo "$n"
}

# inboxes_hold N: the recipients' inboxes hold at least N entries together.
inboxes_hold() {
    [ "$(inbox_total)" -ge "$1" ]
}

# all_receipted: the senders see every recipient of every message they sent
# as receipted (status MSG_ID --json of each, two at a time; those found
# receipted are remembered in $T/.receipted and not asked again); the first
# ones that are not go to $T/.not-receipted.
all_receipted() {
    "$PY" - "$NODE" "$T" "$SENDERS" >"$T/.not-receipted" 2>&1 <<'PY'
import concurrent.futures, json, os, subprocess, sys

node, t, senders = sys.argv[1], sys.argv[2], sys.argv[3].split()
done_path = os.path.join(t, ".receipted")
done = set(open(done_path).read().split()) if os.path.exists(done_path) else set()
work = []
for s in senders:
    path = os.path.join(t, "sent-" + s)
    for line in open(path) if os.path.exists(path) else []:
        if line.strip() and line.strip() not in done:
            work.append((s, line.strip()))

def receipted(item):
    s, m = item
    p = subprocess.run([node, "status", "--home", os.path.join(t, "n-" + s), m, "--json"],
                       capture_output=True, text=True)
    try:
        d = json.loads(p.stdout)
    except ValueError:
        return "%s %s: status exit %d %s" % (s, m, p.returncode, p.stderr.strip()[:200])
    if d.get("state") == "accepted" and len(d.get("recipients", [])) == 2 and all(
            r.get("state") == "receipted" for r in d["recipients"]):
        return None
    return "%s %s: %s %s" % (s, m, d.get("state"),
                             [(r.get("id"), r.get("state")) for r in d.get("recipients", [])])

with concurrent.futures.ThreadPoolExecutor(2) as ex:
    results = list(ex.map(receipted, work))
with open(done_path, "a") as f:
    for (s, m), r in zip(work, results):
        if r is None:
            f.write(m + "\n")
bad = [r for r in results if r]
for b in bad[:5]:
    print(b)
if bad:
    print("%d of %d messages not receipted by every recipient at their sender"
          % (len(bad), len(done) + len(work)))
sys.exit(1 if bad else 0)
PY
}

# flows_again: the recipients' inboxes grow by at least 6 entries within 60 s.
flows_again() {
    local n
    n=$(inbox_total)
    wait_until 60 inboxes_hold $((n + 6))
}

# outbox_waits ID: the sender has messages waiting in its outbox.
outbox_waits() {
    node_status_is "$1" 'd["outbox"] > 0'
}

# drain LIMIT: with the load stopped and everything running, wait (at most
# LIMIT seconds for each step) until every sender's outbox is empty, the
# recipients' inboxes hold every message printed as sent and their count
# stopped growing, and every recipient of every message is receipted at its
# sender.
drain() {
    local limit=$1 start=$SECONDS n want prev
    want=$(($(sent_count) * 2))
    check "drain: every sender's outbox is empty (within $limit s)" \
        wait_until "$limit" outboxes_empty
    echo "# outboxes: $((SECONDS - start)) s"
    start=$SECONDS
    wait_until "$limit" inboxes_hold "$want"
    prev=-1
    n=$(inbox_total)
    while [ "$n" != "$prev" ] && [ $((SECONDS - start)) -lt "$limit" ]; do
        sleep 2
        prev=$n
        n=$(inbox_total)
    done
    # Every printed send is delivered to both recipients: at least $want
    # entries. More are sends whose node was killed before it printed the
    # msg_id; check_exactly_once checks each of them.
    echo "# inboxes: $n entries (previous count $prev), $want expected, $((SECONDS - start)) s"
    check "drain: the recipients' inboxes stopped growing within $limit s" test "$n" = "$prev"
    # More than $want: sends that printed nothing (check_exactly_once).
    check "drain: they hold at least the $want entries printed as sent" test "$n" -ge "$want"
    start=$SECONDS
    if ! check "every recipient of every message sent is receipted at its sender (within 60 s)" \
        wait_slowly 60 all_receipted; then
        sed 's/^/# /' "$T/.not-receipted" | head -n 40
        # What the broker's audit log says about them.
        local m
        for m in $(grep -oE '^[a-z-]+ [0-9a-f]{32}' "$T/.not-receipted" | cut -d' ' -f2 \
            | head -n 3); do
            "$AUDIT" replay --db broker --msg "$m" 2>&1 | sed 's/^/# /'
        done
    fi
}

# check_exactly_once: every msg_id that send printed is in each recipient's
# inbox exactly once, from its sender; no inbox lists any msg_id twice;
# a message in an inbox that no send printed (a send whose node was killed
# before it answered) must be one its sender has stored as sent. Prints a
# TAP line per assertion.
check_exactly_once() {
    local id
    for id in $RECIPIENTS; do
        "$NODE" inbox --home "n-$id" --json --all >"$T/inbox-$id.json" 2>"$T/.err"
    done
    "$PY" - "$T" "$SENDERS" "$RECIPIENTS" >"$T/.eo" 2>&1 <<'PY'
import collections, json, os, re, sys

t, senders, recipients = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
sent = {}          # msg_id -> sender
bad_lines = []
for s in senders:
    path = os.path.join(t, "sent-" + s)
    for line in open(path) if os.path.exists(path) else []:
        m = line.strip()
        if not re.fullmatch(r"[0-9a-f]{32}", m):
            bad_lines.append((s, m))
        elif m in sent:
            bad_lines.append((s, "printed twice: " + m))
        else:
            sent[m] = s
problems = []
if bad_lines:
    problems.append("send printed something that is not a new msg_id: %r" % bad_lines[:5])
extra = {}
for r in recipients:
    counts = collections.Counter()
    froms = {}
    for line in open(os.path.join(t, "inbox-%s.json" % r)):
        if line.strip():
            d = json.loads(line)
            counts[d["msg_id"]] += 1
            froms[d["msg_id"]] = d["from"]
    lost = [m for m in sent if counts[m] == 0]
    dup = sorted((m, c) for m, c in counts.items() if c > 1)
    wrong = [m for m in sent if counts[m] and froms[m] != sent[m]]
    if lost:
        problems.append("%s: %d of %d messages LOST, e.g. %s (from %s)"
                        % (r, len(lost), len(sent), lost[0], sent[lost[0]]))
    if dup:
        problems.append("%s: %d messages DUPLICATED in the inbox, e.g. %s x%d"
                        % (r, len(dup), dup[0][0], dup[0][1]))
    if wrong:
        problems.append("%s: %d messages from the wrong sender, e.g. %s" % (r, len(wrong), wrong[0]))
    for m in counts:
        if m not in sent:
            extra.setdefault(m, set()).add(froms[m])
with open(os.path.join(t, "extra"), "w") as f:
    for m, fs in sorted(extra.items()):
        f.write("%s %s\n" % (m, " ".join(sorted(fs))))
print("%d messages sent, %d deliveries expected, %d unprinted sends delivered"
      % (len(sent), 2 * len(sent), len(extra)))
for p in problems:
    print("PROBLEM " + p)
sys.exit(1 if problems or not sent else 0)
PY
    RC=$?
    cp "$T/.eo" "$T/.all"
    echo "# $(head -n 1 "$T/.eo")"
    check "exactly once: every message printed as sent is in each recipient's inbox once, from its sender; no duplicate" \
        test "$RC" -eq 0
    # Delivered messages whose send did not print: their sender must have
    # stored them (status MSG shows a sent message, receipted by both).
    local m from bad=0
    while read -r m from; do
        if ! msg_status_is "$from" "$m" 'd["direction"] == "sent" and all(
                r["state"] == "receipted" for r in d["recipients"])'; then
            echo "# delivered but not a receipted message of $from: $m"
            bad=$((bad + 1))
        fi
    done <"$T/extra"
    check "every delivered message no send printed is one its sender stored and got receipts for" \
        test "$bad" -eq 0
}

# no_alarms: no node has raised an alarm (status exit 3: a broker that
# rewrote its log, a message missing from the log, ...).
no_alarms() {
    local id
    for id in $NODES; do
        run "$NODE" status --home "n-$id"
        check "$id has raised no alarm (status exit $RC)" test "$RC" -eq 0 ||
            grep -h 'ALARM' "$T/node-$id.log" | head -n 3 | sed 's/^/# /'
    done
}

# fault_finish NAME: stop the load and every daemon; if anything failed,
# keep the logs, the sent lists and the inboxes (with the seed in the
# folder's name) for the report; then node_lib.sh's finish.
fault_finish() {
    local keep
    stop_load
    stop_all
    if [ "$FAILED" -ne 0 ] || [ -n "$BAD_STOPS" ] || grep -qE \
        'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$T"/*.log; then
        keep=$(mktemp -d "${TMPDIR:-/tmp}/keten-$1-seed$SEED.XXXXXX") \
            && cp -a "$T"/*.log "$T"/sent-* "$T"/inbox-*.json broker/store "$keep"/ 2>/dev/null
        echo "# logs, sent lists and inboxes kept in $keep"
    fi
    finish
}

# audit_verify: keten-audit verify on the broker's home (read-only,
# the broker may run); RC 0 expected.
audit_verify() {
    run "$AUDIT" verify --db broker --anchor admin/network.pub
}
