#!/bin/bash
# The measured GPU run, for an offline H200 machine (16 CPU cores; Python 3.12, torch 2.11
# cu130, torchvision 0.26, numba, opencv-python-headless, nvcc 13.0; no registry). Prints ONE JSON on stdout (the
# CUDA tests, bench train per write mode and resolution, transfer iterations/s per config); everything else goes
# to stderr and to $OUT (build logs, JUnit files, device_check.json rewritten after every phase). About 9 minutes:
#   here, once:   bash tests/gpu/prepare_carry.sh                      (fills .gpucarry/, ~30 MiB, git-ignored)
#   there:        bash tests/gpu/run_device_check.sh                   (repository root with .gpucarry/ copied in)
# Build (timed into the JSON): mmcv 2.1.0 (CPU kernels; CUDA ops go through torchvision) in the background from the
# start, ffcv and the wheels in the foreground; the CUDA tests that need no mmcv run while mmcv builds, the
# benchmarks only once the build has stopped competing for the CPUs.
set -uo pipefail
START=$(date +%s)
cd "$(dirname "$0")/../.."
CARRY=${CARRY:-.gpucarry}
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
[ -d "$CARRY/sdist" ] || { echo "no $CARRY/: run bash tests/gpu/prepare_carry.sh here first" >&2; exit 2; }
export PYTHONPATH=/tmp/site-mmcv:/tmp/site:$PWD LD_LIBRARY_PATH=/tmp/sys/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export FASTLOAD_WORDNET_DIR=/tmp/sys/usr/share/wordnet PYTHONUNBUFFERED=1 MMCV_DONE=/tmp/mmcv.done
rm -f "$MMCV_DONE"
(bash tests/gpu/build_deps.sh mmcv "$CARRY" > "$OUT/mmcv_build.log" 2>&1
 echo "rc=$? after $(( $(date +%s) - START )) s" > "$MMCV_DONE") &
MMCV_PID=$!
bash tests/gpu/build_deps.sh ffcv "$CARRY" > "$OUT/ffcv_build.log" 2>&1
ffcv_rc=$?
printf '{"ffcv_rc": %d, "ffcv_s": %d, "nproc": %d}\n' $ffcv_rc $(( $(date +%s) - START )) "$(nproc)" \
  > "$OUT/build.json"
[ $ffcv_rc -eq 0 ] || { tail -20 "$OUT/ffcv_build.log" >&2; }
nvidia-smi -L >&2 || true
python3 tests/gpu/device_check.py --out "$OUT" --started "$START" --budget-s "${BUDGET_S:-560}" \
  --build-json "$OUT/build.json" 2> >(tee "$OUT/device_check.log" >&2)
rc=$?
kill $MMCV_PID 2>/dev/null  # a build still running at the budget's end is reported as not done
exit $rc
