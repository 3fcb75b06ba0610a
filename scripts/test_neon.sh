#!/usr/bin/env bash
# The ARM NEON kernel paths, cross-compiled with Debian's aarch64 toolchain and tested under
# qemu-user: the kernel tests compare every fast kernel with its scalar reference on awkward
# shapes, on every path the emulated CPU reports (generic, neon_dotprod, neon_i8mm), and on
# CPUs without the extensions (where the dispatch must fall back instead of faulting). Built at -O1:
# the tests check results, not speed, and -O3 takes many minutes on the kernel templates.
#
#   bash scripts/test_neon.sh            (installs g++-aarch64-linux-gnu and qemu-user if missing)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$REPO/build-aarch64}"

if ! command -v aarch64-linux-gnu-g++ > /dev/null || ! command -v qemu-aarch64 > /dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q g++-aarch64-linux-gnu qemu-user googletest
fi
[ -d /usr/src/googletest ] || { echo "needs Debian's googletest sources (apt-get install googletest)" >&2; exit 2; }

cmake -S "$REPO" -B "$BUILD" -DCMAKE_TOOLCHAIN_FILE="$REPO/cmake/aarch64-linux-gnu.cmake" \
  -DORCHARD_KERNELS_ONLY=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 > /dev/null
cmake --build "$BUILD" -j"$(nproc)" --target orchard_kernel_tests

# cpu max: dot product and i8mm; cortex-a76: dot product only; cortex-a53: neither.
for cpu in max cortex-a76 cortex-a53; do
  echo "== qemu-aarch64 -cpu $cpu"
  qemu-aarch64 -cpu "$cpu" -L /usr/aarch64-linux-gnu "$BUILD/orchard_kernel_tests" --gtest_brief=1
done
