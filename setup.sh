#!/usr/bin/env bash
# fastload setup: system libraries (apt), a virtualenv at .venv with torch, ffcv, numba, nltk and the
# MMDetection stack (mmcv 2.1.0 built from source with the C++20 fix and CPU kernels only, its wheel cached), then
# fastload itself. The same setup serves CPU and GPU machines: on CUDA tensors the mmcv ops of the shipped transfer
# configs run on torchvision's CUDA kernels (fastload/mmdet/cuda_ops.py), so no nvcc build is needed.
# Idempotent: a second run checks a stamp and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv
PY=${FASTLOAD_PYTHON:-python3}
APT_PKGS="libturbojpeg0-dev libopencv-dev pkg-config wordnet-base wordnet-sense-index"
TORCH="torch==2.14.1 torchvision==0.29.1"
MMCV_VERSION=2.1.0
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/fastload
STAMP=$VENV/.fastload-setup
want_stamp=$(cat setup.sh pyproject.toml | sha256sum | cut -c1-16)

say() { echo "[setup] $*" >&2; }

install_system_packages() {
  local missing=() pkgs=$APT_PKGS
  # Compilers and Python headers for ffcv and mmcv, venv for the virtualenv, when the machine lacks them.
  command -v g++ >/dev/null || pkgs="$pkgs build-essential"
  "$PY" -c 'import ensurepip, venv' 2>/dev/null || pkgs="$pkgs python3-venv"
  [ -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)/Python.h" ] || pkgs="$pkgs python3-dev"
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    say "missing system packages: ${missing[*]}"
    say "install them as root with: apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build_mmcv_wheel() {
  # PyPI has only mmcv's source release; mmdet 3.3.0 refuses mmcv >= 2.2.0. torch 2.14's headers need
  # C++20, while mmcv's setup.py asks for C++14/17: patch the flags, build once, cache the wheel.
  # The build is CPU-only on every machine: mmcv's setup.py compiles its ~60 CUDA files whenever torch sees a GPU,
  # so the GPUs are hidden from it (CUDA_VISIBLE_DEVICES=); fastload/mmdet/cuda_ops.py runs the ops the transfer
  # configs reach on torchvision's CUDA kernels instead. The cache key therefore names no CUDA version or arch:
  # it is the key of this CPU-only wheel (mmcv-<ver>-torch<ver>-cp<py>), valid on CPU and GPU machines alike.
  local pyver torchver key wheel_dir
  pyver=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  torchver=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
  key="mmcv-$MMCV_VERSION-torch$torchver-$pyver"
  wheel_dir=$CACHE/wheels/$key
  if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    say "building mmcv $MMCV_VERSION from source, CPU kernels only (CUDA tensors use torchvision's kernels;"
    say "  about 7 minutes on 2 cores, once: the wheel is cached in $wheel_dir)"
    local work; work=$(mktemp -d)
    # mmcv 2.1's setup script needs the setuptools of its day (pkg_resources, setup.py develop): build with < 70.
    "$PIP" install -q "setuptools<70" 2>/dev/null
    "$VENV/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
    # -g0: no debug info (a smaller wheel, a faster build)
    (cd "$work/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) FORCE_CUDA=0 CUDA_VISIBLE_DEVICES= \
      CFLAGS="${CFLAGS:-} -g0" "$VENV/bin/pip" wheel -q --no-build-isolation --no-deps -w "$work/dist" .)
    mkdir -p "$wheel_dir.tmp" && cp "$work"/dist/mmcv-*.whl "$wheel_dir.tmp/"
    rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"
    rm -rf "$work"
    "$PIP" install -q "$SETUPTOOLS" 2>/dev/null
  fi
  "$VENV/bin/pip" install -q --no-deps "$wheel_dir"/mmcv-*.whl
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ]; then
  exit 0
fi
install_system_packages
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"
say "installing Python packages into $VENV"
# torch 2.14 asks for setuptools >= 77; < 81 still carries pkg_resources, which mmengine imports.
SETUPTOOLS="setuptools>=77,<81"
"$PIP" install -q --upgrade "pip<26.2" "$SETUPTOOLS" wheel
"$PIP" install -q $TORCH
"$PIP" install -q "numpy>=1.26" "numba>=0.59" "nltk>=3.8" pyyaml tqdm pillow matplotlib tensorboard \
  opencv-python-headless "pytest>=7" pytest-timeout cython terminaltables pycocotools scipy shapely six
# ffcv builds against libturbojpeg and opencv found through pkg-config.
"$VENV/bin/python" -c 'import ffcv' 2>/dev/null || "$PIP" install -q --no-build-isolation "ffcv==1.0.2"
"$PIP" install -q "mmengine==0.10.7" addict rich termcolor yapf
"$VENV/bin/python" -c 'import mmcv.ops' 2>/dev/null || build_mmcv_wheel
"$PIP" install -q --no-deps "mmdet==3.3.0"
"$PIP" install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c 'import torch, torchvision, ffcv, numba, nltk, mmcv.ops, mmdet, mmengine, fastload' 
echo "$want_stamp" > "$STAMP"
say "done: $VENV"
