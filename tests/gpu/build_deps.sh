#!/bin/bash
# Build what tests/gpu/run_device_check.sh needs on the bare GPU machine, from the folder prepare_carry.sh filled
# (no registry there).
#   bash tests/gpu/build_deps.sh ffcv CARRY   libraries into /tmp/sys, Python packages and ffcv into /tmp/site
#   bash tests/gpu/build_deps.sh mmcv CARRY   mmcv 2.1.0, CPU kernels only, into /tmp/site-mmcv
# The caller exports PYTHONPATH=/tmp/site-mmcv:/tmp/site:REPO and LD_LIBRARY_PATH=/tmp/sys/usr/lib/x86_64-linux-gnu.
set -euo pipefail
what=$1
C=$(realpath "$2")
L=/tmp/sys/usr/lib/x86_64-linux-gnu
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$@"; }

build_ffcv() {
  mkdir -p /tmp/sys /tmp/site /tmp/sys/pc
  for f in "$C"/debs/*.deb; do dpkg -x "$f" /tmp/sys; done
  (cd $L
   for so in libopencv_core libopencv_imgproc; do [ -e $so.so ] || ln -sf "$(ls $so.so.4* | head -1)" $so.so; done
   [ -e libturbojpeg.so ] || ln -sf "$(ls libturbojpeg.so.0.* | head -1)" libturbojpeg.so)
  # only core and imgproc are carried: say so to opencv.hpp
  printf '#ifndef OPENCV_MODULES_HPP\n#define OPENCV_MODULES_HPP\n#define HAVE_OPENCV_CORE\n#define HAVE_OPENCV_IMGPROC\n#endif\n' \
    > /tmp/sys/usr/include/opencv4/opencv2/opencv_modules.hpp
  printf 'Name: opencv4\nDescription: core+imgproc\nVersion: 4.6.0\nLibs: -L%s -lopencv_imgproc -lopencv_core\nCflags: -I/tmp/sys/usr/include/opencv4\n' \
    "$L" > /tmp/sys/pc/opencv4.pc
  printf 'Name: libturbojpeg\nDescription: turbojpeg\nVersion: 2.1.5\nLibs: -L%s -lturbojpeg\nCflags: -I/tmp/sys/usr/include\n' \
    "$L" > /tmp/sys/pc/libturbojpeg.pc
  mkdir -p /tmp/sys/bin && ln -sf /tmp/sys/usr/bin/pkgconf /tmp/sys/bin/pkg-config  # ffcv's setup.py calls it
  PATH=$PATH:/tmp/sys/bin PKG_CONFIG_PATH=/tmp/sys/pc LD_LIBRARY_PATH=$L:${LD_LIBRARY_PATH:-} \
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
    "$C"/whl/*.whl "$C"/sdist/ffcv-1.0.2.tar.gz
  python3 -c 'import sys; sys.path[:0] = ["/tmp/site"]; import ffcv, mmengine, mmdet.registry, nltk; print("ffcv ok")'
}

build_mmcv() {
  # As setup.sh: C++20 flags, CPU kernels only (the GPU hidden from mmcv's setup.py, which would otherwise compile
  # its CUDA files). -O1 -g0 to build faster: on CUDA tensors no mmcv kernel runs (fastload/mmdet/cuda_ops.py).
  local work=/tmp/mmcv-build
  rm -rf $work && mkdir -p $work /tmp/buildtools /tmp/site-mmcv
  pip_target /tmp/buildtools "$C"/buildwhl/setuptools-*.whl
  tar -xzf "$C"/sdist/mmcv-2.1.0.tar.gz -C $work
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' $work/mmcv-2.1.0/setup.py
  (cd $work/mmcv-2.1.0 && PYTHONPATH=/tmp/buildtools MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_VISIBLE_DEVICES= \
     MAX_JOBS=$(nproc) CFLAGS="-g0 -O1" python3 -m pip wheel -q --no-index --no-build-isolation --no-deps \
     --no-cache-dir -w $work/dist .)
  pip_target /tmp/site-mmcv $work/dist/mmcv-*.whl
  ls /tmp/site-mmcv/mmcv/_ext*.so  # imported later, once the ffcv step has installed mmengine
}

case $what in
  ffcv) build_ffcv ;;
  mmcv) build_mmcv ;;
  *) echo "usage: $0 ffcv|mmcv CARRY" >&2; exit 2 ;;
esac
