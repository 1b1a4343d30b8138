#!/usr/bin/env bash
# Install what is missing, build, and run every test: once normally and once
# under AddressSanitizer + UndefinedBehaviorSanitizer. Ends with the line
# "N passed, N failed" counted from meson's test results.
# A test skipped as a whole counts as failed: CI must not go green by
# skipping.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --test --packaging || exit 1

passed=0
failed=0
# run_suite DIR MESON-TEST-ARGS -- MESON-SETUP-ARGS
run_suite() {
  local dir=$1 targs=() sargs=()
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do targs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  sargs=("$@")
  if [ ! -d "$dir" ]; then
    meson setup "$dir" "${sargs[@]}" >/dev/null || return 1
  fi
  ninja -C "$dir" || return 1
  meson test -C "$dir" --print-errorlogs --num-processes 3 "${targs[@]}"
  local log="$dir/meson-logs/testlog.json"
  [ -f "$log" ] || return 1
  local p f
  p=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(1 for x in r if x["result"] in ("OK","EXPECTEDFAIL")))' "$log")
  f=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(sum(1 for x in r if x["result"] not in ("OK","EXPECTEDFAIL")))' "$log")
  echo "$dir: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
}

build_failed=0
run_suite build --no-suite packaging -- -Dwerror=true || build_failed=1
run_suite build-asan --no-suite packaging -- -Dwerror=true -Db_sanitize=address,undefined \
  -Db_lundef=false || build_failed=1
# The Debian package is built, installed and purged once (it needs root and
# the packaging tools, which deps.sh --packaging installed above).
if [ "$(id -u)" -eq 0 ]; then
  run_suite build --suite packaging -- -Dwerror=true || build_failed=1
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
