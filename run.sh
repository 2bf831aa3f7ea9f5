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
    exec swift test "${BUILD_FLAGS[@]}" -j "$JOBS" --skip-build "$@"
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
