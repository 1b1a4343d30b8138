#!/usr/bin/env bash
# Install what is missing, build, and run every test: once normally and once
# under AddressSanitizer + UndefinedBehaviorSanitizer. Ends with the line
# "N passed, N failed" counted from meson's test results.
# A test skipped as a whole counts as failed: CI must not go green by
# skipping.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
./scripts/deps.sh --test --packaging || exit 1

passed=0
failed=0
# check_options DIR -DNAME=VALUE...: meson says DIR is configured with each
# of these values (meson introspect --buildoptions).
check_options() {
  local dir=$1
  shift
  meson introspect --buildoptions "$dir" | python3 -c '
import json, sys
have = {o["name"]: o["value"] for o in json.load(sys.stdin)}
wrong = []
for arg in sys.argv[2:]:
    name, want = arg[2:].split("=", 1)
    v = have.get(name)
    got = str(v).lower() if isinstance(v, bool) else ",".join(v) if isinstance(v, list) else str(v)
    if got != want:
        wrong.append("%s=%s (stated: %s)" % (name, got, want))
if wrong:
    print("%s: not configured as stated: %s" % (sys.argv[1], ", ".join(wrong)))
    sys.exit(1)
print("%s: %s" % (sys.argv[1], " ".join(sys.argv[2:])))
' "$dir" "$@"
}
# run_suite DIR MESON-TEST-ARGS -- MESON-SETUP-ARGS
run_suite() {
  local dir=$1 targs=() sargs=()
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do targs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  sargs=("$@")
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    # An existing build folder may be configured otherwise (scripts/demo.sh
    # makes build/ without the tests (-Dtests=false), a developer may have changed
    # it): it gets the options stated here. `meson configure`, because
    # `meson setup --reconfigure` ignores the b_ options (b_sanitize). Only
    # when they differ: meson configure makes ninja regenerate.
    if ! check_options "$dir" "${sargs[@]}" >/dev/null; then
      meson configure "$dir" "${sargs[@]}" >/dev/null || return 1
    fi
  else
    meson setup "$dir" "${sargs[@]}" >/dev/null || return 1
  fi
  check_options "$dir" "${sargs[@]}" || return 1
  ninja -C "$dir" || return 1
  # Four tests at a time on two cores: many integration tests spend much of
  # their time waiting (for a daemon's timer, a time-out under test), so
  # four keep the cores busier than three (the normal run about 11 %
  # shorter); every wait in a test is bounded generously for a loaded
  # machine (tests/README.md).
  meson test -C "$dir" --print-errorlogs --num-processes 4 "${targs[@]}"
  local log="$dir/meson-logs/testlog.json"
  [ -f "$log" ] || return 1
  local p f
  p=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(1 for x in r if x["result"] in ("OK","EXPECTEDFAIL")))' "$log")
  f=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(1 for x in r if x["result"] not in ("OK","EXPECTEDFAIL")))' "$log")
  # Each failed test's failed checks and the end of its output, once more
  # here at the end, where a short excerpt of the CI log still shows them.
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    x = json.loads(line)
    if x["result"] in ("OK", "EXPECTEDFAIL"):
        continue
    out = (x.get("stdout") or "").splitlines()
    err = (x.get("stderr") or "").splitlines()
    print("FAILED %s (%s):" % (x["name"], x["result"]))
    shown = 0
    for i, l in enumerate(out):
        if not l.startswith("not ok") or shown >= 10:
            continue
        shown += 1
        print("  " + l[:300])
        # the diagnostic lines the test printed right after it
        for d in out[i + 1:i + 26]:
            if not d.startswith("#"):
                break
            print("    " + d[:300])
    for l in (out + err)[-12:]:
        print("  | " + l[:300])
' "$log"
  echo "$dir: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
}

# Both builds: the project's build type and warnings, as errors, and the test
# programs; one without and one with the sanitizers.
# The tests need the test hooks (-Dtest_hooks=true; meson stops without them).
common=(-Dbuildtype=debugoptimized -Dwarning_level=3 -Dwerror=true -Dtests=true -Dtest_hooks=true)
plain=("${common[@]}" -Db_sanitize=none -Db_lundef=true)
# shellcheck disable=SC2054 # one meson value, a comma-separated list
asan=("${common[@]}" -Db_sanitize=address,undefined -Db_lundef=false)
build_failed=0
run_suite build --no-suite packaging -- "${plain[@]}" || build_failed=1
run_suite build-asan --no-suite packaging -- "${asan[@]}" || build_failed=1
# The Debian package is built, installed and purged once (it needs root and
# the packaging tools, which deps.sh --packaging installed above).
if [ "$(id -u)" -eq 0 ]; then
  run_suite build --suite packaging -- "${plain[@]}" || build_failed=1
else
  echo "not root: the packaging test (apt-get install of the package) was not run"
  failed=$((failed + 1))
fi
if [ "$build_failed" -ne 0 ]; then
  failed=$((failed + 1))
  echo "a build or test run could not complete"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
