#!/usr/bin/env bash
# GPU figures for docs/gpu.md, on a machine with an NVIDIA GPU: the NVDEC/NVENC tests
# (pytest -m gpu), then decode-only, the analysis pass and the full pipeline on generated
# 1080p H.264, software against NVDEC. Installs nothing but the project's own venv
# (make .venv/.installed) when it is not there yet.
#   bash bench/gpu/run.sh [SECONDS] [WORKDIR]    (default: 60 s of 1080p in bench-out/gpu)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
work=${2:-bench-out/gpu}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || {
  echo "nvidia-smi failed: no NVIDIA GPU or driver here" >&2; exit 1; }
.venv/bin/python -c "import clipfactory" 2>/dev/null || make .venv/.installed
.venv/bin/python -c "import av; print('PyAV', av.__version__, 'FFmpeg', av.ffmpeg_version_info)"
.venv/bin/python -c "import sys; from clipfactory.media.nvdec import cuda_device_opens as ok
sys.exit(0 if ok() else 'FFmpeg (PyAV) opens no CUDA device here')"
.venv/bin/pytest -q -p no:cacheprovider -m gpu tests/media/test_hwaccel.py \
  tests/media/test_transcode.py
.venv/bin/python bench/gpu/measure.py --seconds "$seconds" --workdir "$work"
