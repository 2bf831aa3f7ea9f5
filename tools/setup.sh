#!/usr/bin/env bash
# Installs the system packages Tessera needs, once. Safe to run again: it only installs what is missing.
set -euo pipefail
PKGS=(libopenblas-dev libdnnl-dev openmpi-bin libopenmpi-dev libturbojpeg0-dev libhdf5-dev zlib1g-dev pkg-config dataset-fashion-mnist)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tessera: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
