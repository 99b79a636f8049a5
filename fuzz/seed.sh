#!/usr/bin/env bash
# Builds the fuzz corpora from the repository's fixtures: every event body for `decode`, every
# pattern of tests/fixtures/patterns/cases.jsonl for `pattern`. Run from anywhere; then
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode corpus/decode -- -max_total_time=60
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
fixtures=../tests/fixtures
mkdir -p corpus/decode corpus/pattern
n=0
for f in "$fixtures"/events/eventbridge/*.json "$fixtures"/events/sqs/*.json; do
  cp "$f" "corpus/decode/$(basename "$f")"
  n=$((n + 1))
done
python3 - "$fixtures/patterns/cases.jsonl" corpus/pattern <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[2])
for i, line in enumerate(open(sys.argv[1])):
    case = json.loads(line)
    # The pattern target reads "pattern, newline, event".
    text = json.dumps(case["pattern"]) + "\n" + json.dumps(case["event"])
    (out / f"case-{i:03}.txt").write_text(text)
PY
echo "corpus/decode: $n files; corpus/pattern: $(ls corpus/pattern | wc -l) files"
