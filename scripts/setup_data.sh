#!/usr/bin/env bash
# Make Fashion-MNIST available, offline where possible, then verify its checksums.
#   1. already found (--data-dir / $NIN_DATA_DIR / ./data/fashion-mnist / /usr/share/datasets/fashion-mnist): done
#   2. apt-get usable (root): Debian's dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist
#   3. otherwise torchvision's download into ./data/fashion-mnist (needs internet)
set -euo pipefail
PY=${1:-.venv/bin/python}

if $PY -m shared.data >/dev/null 2>&1; then
  $PY -m shared.data
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's dataset-fashion-mnist"
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1) || \
    (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
  sudo apt-get update -q >/dev/null && sudo apt-get install -y -q dataset-fashion-mnist >/dev/null
else
  echo "apt-get is not usable here: downloading with torchvision into ./data/fashion-mnist"
  $PY -m nin_torch.data --download data/fashion-mnist
fi
$PY -m shared.data
