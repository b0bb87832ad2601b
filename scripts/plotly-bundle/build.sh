#!/usr/bin/env bash
# Builds static/vendor/plotly-charter.min.js: plotly.js core + the trace types in entry.js.
#
#   scripts/plotly-bundle/build.sh        needs Node >= 20 and the npm registry (build time only)
#
# The output is committed: Charter serves it as a static file and never runs npm (air-gapped
# installs). Versions are pinned exactly in package.json / package-lock.json; to move to another
# plotly.js, `npm install --save-exact plotly.js@X.Y.Z` here, run this script, check the pages
# (tests/test_static_delivery.py draws one trace of each type when Chromium is installed) and
# commit both the lock file and the bundle. The build is deterministic: same lock, same bytes.
#
# plotly.js 4.1.1: the full bundle this replaced was plotly.js-dist-min 4.1.2, but 4.1.2 was never
# published as the plotly.js source package (only prebuilt), and a partial bundle needs the source.
# plotly.js declares Node >= 22 for its own build tooling; bundling it with esbuild works on Node 20.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$(cd "$HERE/../.." && pwd)/static/vendor/plotly-charter.min.js"
cd "$HERE"

# --ignore-scripts: nothing here needs an install script (esbuild's binary comes as an optional
# dependency; its postinstall only verifies it).
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

version="$(node -p 'require("plotly.js/package.json").version')"
# plotly.js's own bundles use the same settings (its esbuild-config.js): an IIFE that sets the
# global Plotly, `global` mapped to window, AMD off, regl deduplicated onto @plotly/regl.
# plotly.js requires maplibre's CSS only when a map trace registers (none here): its own build
# inlines it, this one drops it (--loader:.css=empty) instead of writing a stray .css beside the
# bundle. Licence comments of bundled dependencies are kept at the end of the file (esbuild's default).
node_modules/.bin/esbuild entry.js \
  --bundle --minify --format=iife --global-name=Plotly --target=es2016 \
  --define:global=window --define:define.amd=false --alias:regl=@plotly/regl --loader:.css=empty \
  --banner:js="/**
* plotly.js v$version, partial bundle for Charter (traces: bar, box, heatmap, scatter, scattergl)
* Copyright 2012-2026, Plotly, Inc.
* All rights reserved.
* Licensed under the MIT license
*/" \
  --log-level=warning --outfile="$OUT"

raw=$(wc -c <"$OUT")
gz=$(gzip -9c "$OUT" | wc -c)
echo "wrote $OUT: $raw bytes, $gz gzipped (plotly.js $version)"
