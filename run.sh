#!/usr/bin/env bash
# Tessera's one entry point.
#   ./run.sh CONFIG.yaml [--set key=value ...]   train (pretrain / finetune / linprobe / knn / attentive per config)
#   ./run.sh test                                 install what is missing, build, run every test
#   ./run.sh sweep GRID.yaml                      a grid of runs (finished cells are skipped)
#   ./run.sh table DIR                            markdown table of the runs under DIR
#   ./run.sh <subcommand> ...                     any other `tessera` subcommand (list, step, bench, knn, prepare, ...)
set -euo pipefail
cd "$(dirname "$0")"

bash tools/setup.sh

BUILD_FLAGS=(-c release -Xswiftc -target-cpu -Xswiftc native)
JOBS="${TESSERA_BUILD_JOBS:-2}"

build() {
  swift build "${BUILD_FLAGS[@]}" -j "$JOBS" --product tessera >&2
}

if [ $# -eq 0 ]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
fi

case "$1" in
  test)
    shift
    swift build "${BUILD_FLAGS[@]}" -j "$JOBS" --build-tests >&2
    # The suite is XCTest only; Swift Testing would end the output with an empty "0 tests" run.
    log=$(mktemp)
    set +e
    swift test "${BUILD_FLAGS[@]}" -j "$JOBS" --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    summary=$(grep -E "Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -1 || true)
    rm -f "$log"
    if [ -n "$summary" ]; then
      total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
      failed=$(echo "$summary" | sed -E 's/.*with ([0-9]+) failures?.*/\1/')
      echo "tests: $((total - failed)) passed, $failed failed"
    fi
    exit "$rc"
    ;;
  *.yaml|*.yml)
    build
    exec "$(swift build "${BUILD_FLAGS[@]}" --show-bin-path)/tessera" train "$@"
    ;;
  *)
    build
    exec "$(swift build "${BUILD_FLAGS[@]}" --show-bin-path)/tessera" "$@"
    ;;
esac
