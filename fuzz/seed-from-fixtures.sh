#!/bin/sh
# Copies the real Xiaomi flash scripts (third-party files kept outside this repository, in
# ../shared/fixtures/xiaomi-scripts next to the crate) into the git-ignored working corpus of
# the script_parse target, so a fuzz run starts from what real packages contain. The files
# are never committed: fuzz/work/ is ignored.
#
#   sh fuzz/seed-from-fixtures.sh && cargo fuzz run script_parse fuzz/work/script_parse fuzz/corpus/script_parse
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fixtures=${MI_FLASH_FIXTURES:-$here/../../shared/fixtures/xiaomi-scripts}
work=$here/work/script_parse
if [ ! -d "$fixtures" ]; then
    echo "no fixtures at $fixtures (set MI_FLASH_FIXTURES to the folder of Xiaomi scripts); nothing copied" >&2
    exit 1
fi
mkdir -p "$work"
n=0
for f in "$fixtures"/*.sh "$fixtures"/*.bat; do
    [ -f "$f" ] || continue
    cp "$f" "$work/fixture-$(basename "$f")"
    n=$((n + 1))
done
echo "copied $n scripts from $fixtures into $work"
