#!/bin/bash
# Run on a CPU machine with apt and pip (this project's dev machine), from anywhere: fills .gpucarry/ in the repo
# root (git-ignored through .git/info/exclude) with what the offline GPU machine (Python 3.12, torch 2.11 cu130,
# torchvision 0.26, numba, opencv-python-headless, nvcc 13.0; no registry) lacks for tests/gpu/run_device_check.sh:
#   debs/    Debian libraries ffcv links (OpenCV core+imgproc, libturbojpeg), pkg-config and WordNet, unpacked
#            there into /tmp/sys
#   whl/     Python 3.12 wheels installed there with --no-deps: mmengine, mmdet, nltk and the pure-Python needs of
#            ffcv and mmdet
#   sdist/   ffcv 1.0.2 and mmcv 2.1.0 source releases, built there (tests/gpu/build_deps.sh)
#   buildwhl/ setuptools < 70 for mmcv's setup.py (pkg_resources), used for the build only
# About 30 MiB, copied to the GPU machine with the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARRY=.gpucarry
grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
rm -rf "$CARRY.tmp"
mkdir -p "$CARRY.tmp"/{debs,whl,sdist,buildwhl}
(cd "$CARRY.tmp/debs" && apt-get download libopencv-core406 libopencv-core-dev libopencv-imgproc406 \
   libopencv-imgproc-dev libturbojpeg0 libturbojpeg0-dev libtbb12 libtbbmalloc2 liblapack3 libblas3 libgfortran5 \
   wordnet-base pkgconf-bin libpkgconf3)
download() {  # wheels for the GPU machine's CPython 3.12 on x86-64
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$@"
}
download "$CARRY.tmp/whl" mmengine==0.10.7 mmdet==3.3.0 nltk==3.10.4 addict==2.4.0 yapf==0.43.0 \
  platformdirs==4.14.9 termcolor==3.3.0 terminaltables==3.1.10 pycocotools==2.0.11 shapely==2.2.0 \
  pytorch_pfn_extras==0.9.0 defusedxml==0.7.1
download "$CARRY.tmp/buildwhl" "setuptools<70"
python3 -m pip wheel -q --no-deps -w "$CARRY.tmp/whl" assertpy==1.1 fastargs==1.2.0
# pip reads a source release's metadata by running its setup.py, which imports numpy and torch: use the project's
# venv (./setup.sh made it), as setup.sh does for mmcv
.venv/bin/pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$CARRY.tmp/sdist" ffcv==1.0.2 \
  mmcv==2.1.0
rm -rf "$CARRY" && mv "$CARRY.tmp" "$CARRY"
du -sh "$CARRY"
