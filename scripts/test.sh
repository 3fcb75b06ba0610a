#!/usr/bin/env bash
# Builds Orchard and runs the test suite.
#   bash scripts/test.sh              # Release build in build/
#   bash scripts/test.sh --sanitize   # AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
#   bash scripts/test.sh --no-server  # without the HTTP server (-DORCHARD_SERVER=OFF) in build-noserver/
# The shared test data is expected at ../shared (override with ORCHARD_SHARED=/path).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  # -g1 (line tables) is enough for the sanitizers' stack traces and builds the kernel templates
  # about a third faster than full debug information.
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
    -DORCHARD_SANITIZE=ON >/dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
elif [ "${1:-}" = "--no-server" ]; then
  # The engine, tokenizer, templates, quantizer and CLI build and pass without cpp-httplib. Its
  # objects are the plain build's (same flags), so ccache makes this a link and a test run.
  dir=build-noserver
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DORCHARD_SERVER=OFF >/dev/null
else
  dir=build
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DORCHARD_SERVER=ON >/dev/null
fi
cmake --build "$dir" -j"$jobs"
cd "$dir" && ctest -j"$jobs" --output-on-failure --timeout 900
