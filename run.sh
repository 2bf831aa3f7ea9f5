#!/usr/bin/env bash
# Tessera's one entry point.
#   ./run.sh CONFIG.yaml [--set key=value ...]   train (pretrain / finetune / linprobe / knn / attentive per config)
#   ./run.sh test                                 install what is missing, build, run every test
#   ./run.sh sweep GRID.yaml                      a grid of runs (finished cells are skipped)
#   ./run.sh table DIR                            markdown table of the runs under DIR
#   ./run.sh launch -np N [--hostfile F] CONFIG.yaml [--set ...]   train on N processes under mpirun
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
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
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
  launch)
    # mpirun's own options (-np N, --hostfile F, -H hosts, ...) up to the config, then train's.
    shift
    mpi=()
    while [ $# -gt 0 ] && [[ "$1" != *.yaml && "$1" != *.yml ]]; do
      case "$1" in
        -np|-n|--np|--hostfile|-hostfile|--machinefile|-H|--host|--map-by|--bind-to|-x|--mca)
          [ $# -ge 2 ] || { echo "run.sh launch: $1 needs a value" >&2; exit 2; }
          if [ "$1" = --mca ]; then mpi+=("$1" "$2" "$3"); shift 3; else mpi+=("$1" "$2"); shift 2; fi ;;
        *) mpi+=("$1"); shift ;;
      esac
    done
    [ $# -ge 1 ] || { echo "usage: ./run.sh launch -np N [--hostfile F] CONFIG.yaml [--set key=value ...]" >&2; exit 2; }
    command -v mpirun >/dev/null || { echo "run.sh launch: mpirun not found (tools/setup.sh installs openmpi-bin)" >&2; exit 1; }
    build
    bin="$(swift build "${BUILD_FLAGS[@]}" --show-bin-path)/tessera"
    extra=(--bind-to none)
    if [ "$(id -u)" = 0 ]; then extra+=(--allow-run-as-root); fi
    # One machine in a container: shared memory without the cross-memory-attach mechanism.
    exec mpirun "${extra[@]}" --mca btl_vader_single_copy_mechanism none "${mpi[@]}" "$bin" train "$@"
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
