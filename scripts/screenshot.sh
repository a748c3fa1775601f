#!/usr/bin/env bash
# Render an HTML file (e.g. a digest preview) to PNG with headless Chromium, so a
# person can look at it as a mail client would show it.
#   scripts/screenshot.sh demo-out/digest/digest-2026-11-03.html digest.png
# Needs Debian's chromium (apt-get install chromium); no network is used.
set -euo pipefail
html=$(realpath "$1"); png=${2:-${1%.html}.png}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "screenshot.sh: chromium not found (apt-get install chromium)" >&2; exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=720,1600 \
  --screenshot="$(realpath -m "$png")" "file://$html" >/dev/null 2>&1
echo "wrote $png"
