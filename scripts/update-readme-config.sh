#!/usr/bin/env bash
# Regenerates README's configuration table from the binary's own settings (`mediaplane config-table`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mediaplane/target}
if [ -n "${MEDIAPLANE_BIN:-}" ]; then table=$("$MEDIAPLANE_BIN" config-table); else table=$(cargo run -q --bin mediaplane -- config-table); fi
python3 - "$table" <<'PY'
import re, sys
table = sys.argv[1]
text = open("README.md").read()
start, end = "<!-- config-table:start -->", "<!-- config-table:end -->"
text = re.sub(re.escape(start) + ".*?" + re.escape(end), start + "\n" + table.strip() + "\n" + end, text, flags=re.S)
open("README.md", "w").write(text)
PY
