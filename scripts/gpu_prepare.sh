#!/usr/bin/env bash
# Prepare, HERE, everything scripts/gpu_check.sh needs on a bare GPU machine, in one ignored folder
# that the device call carries: .gpu/wheels (scripts/gpu_wheels.sh) and .gpu/data/<dataset>/*.parquet.
#
#   bash scripts/gpu_prepare.sh        # then: device run, carry [".gpu"], command "bash scripts/gpu_check.sh"
#   RESUME="results/full-imdb-cuda-valacc results/full-imdb-cuda-tuned" bash scripts/gpu_prepare.sh
#                                      # also carry those results folders (.gpu/resume): gpu_check.sh resumes
#                                      # them (units already run are kept; a tuning study goes on in optuna.db)
# The committed results/ is itself ~64 MiB: hide it around the call with scripts/gpu_tree.sh.
#
# ../shared/data does not travel to the GPU machine, so the parquet files are copied into .gpu/data,
# rewritten with zstd level 19 (IMDB 27 -> 21 MB, AG News 2.7 -> 1.4 MB; the rows, their order and
# the schema are unchanged and checked). The encoded-data cache would not be smaller: it is
# uncompressed int32 (IMDB at 400 tokens: 50k x 400 x 4 B = 80 MB), and its key holds the parquet
# files' absolute paths and mtimes, which differ there.
# Then it checks what travels (tracked + untracked-not-ignored files + .gpu) against the 64 MiB limit.
#
# Environment: SRC (default ../shared/data), DEST (default .gpu/data), DATASETS (default "imdb ag_news"),
# ROWS (0 = every row; N = a random N-row sample of each split, for a dry run), ZSTD_LEVEL (19),
# SKIP_WHEELS=1 (keep .gpu/wheels as it is), LIMIT_MIB (64), RESUME (results folders to carry, default none).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${SRC:-../shared/data}"
DEST="${DEST:-.gpu/data}"
DATASETS="${DATASETS:-imdb ag_news}"
ROWS="${ROWS:-0}"
ZSTD_LEVEL="${ZSTD_LEVEL:-19}"
LIMIT_MIB="${LIMIT_MIB:-64}"

# 1. never commit what travels: .gpu/ is ignored locally (the device docs' recipe), not in .gitignore
exclude="$(git rev-parse --git-path info/exclude 2>/dev/null || echo .git/info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qxF "/.gpu/" "$exclude" 2>/dev/null || echo "/.gpu/" >> "$exclude"

# the commit being checked, for the summary (the GPU machine gets no .git)
mkdir -p .gpu && { git rev-parse HEAD 2>/dev/null || echo unknown; git diff --quiet HEAD 2>/dev/null || echo "+ uncommitted changes"; } > .gpu/GIT_SHA

# 2. wheels
if [ "${SKIP_WHEELS:-0}" != 1 ]; then
    bash scripts/gpu_wheels.sh
fi

# 3. data
for ds in $DATASETS; do
    mkdir -p "$DEST/$ds"
    for split in train test; do
        python3 - "$SRC/$ds/$split.parquet" "$DEST/$ds/$split.parquet" "$ROWS" "$ZSTD_LEVEL" <<'PY'
import sys

import numpy as np
import pyarrow.parquet as pq

src, dst, rows, level = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
table = pq.read_table(src)
if rows and rows < table.num_rows:  # a dry-run sample: random rows (IMDB is sorted by label), kept in order
    take = np.sort(np.random.default_rng(0).choice(table.num_rows, size=rows, replace=False))
    table = table.take(take)
pq.write_table(table, dst + ".tmp", compression="zstd", compression_level=level)
back = pq.read_table(dst + ".tmp")
assert back.equals(table) and back.schema.equals(table.schema, check_metadata=True), f"{dst}: rewrite differs"
import os
os.replace(dst + ".tmp", dst)
print(f"gpu_prepare: {dst}: {table.num_rows} rows, {os.path.getsize(src) / 2**20:.1f} -> "
      f"{os.path.getsize(dst) / 2**20:.1f} MiB")
PY
    done
    [ -f "$SRC/$ds/SOURCE.md" ] && cp "$SRC/$ds/SOURCE.md" "$DEST/$ds/"
done

# 4. results folders to resume there (without their plots and reports, which are rebuilt here)
rm -rf .gpu/resume
for folder in ${RESUME:-}; do
    [ -f "$folder/config.json" ] || { echo "gpu_prepare: $folder is no results folder (no config.json)" >&2; exit 2; }
    mkdir -p .gpu/resume
    cp -a "$folder" ".gpu/resume/" && rm -rf ".gpu/resume/$(basename "$folder")"/{plots,REPORT.md,.bench.lock*}
    echo "gpu_prepare: $folder -> .gpu/resume/$(basename "$folder") ($(du -sh ".gpu/resume/$(basename "$folder")" | cut -f1))"
done

# 5. what travels: tracked and untracked-not-ignored files, plus the carried folder
python3 - "$LIMIT_MIB" "$DEST" <<'PY'
import os
import subprocess
import sys

limit, dest = float(sys.argv[1]), sys.argv[2]
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                       check=True).stdout.decode().split("\0")
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
carried = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".gpu") for f in fs)
data_outside = 0 if os.path.abspath(dest).startswith(os.path.abspath(".gpu")) else \
    sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(dest) for f in fs)
mib = lambda b: b / 2**20
total = tree + carried
print(f"gpu_prepare: travels {mib(total):.1f} MiB of {limit:.0f} (working tree {mib(tree):.1f}, .gpu {mib(carried):.1f}: "
      f"wheels {mib(sum(os.path.getsize(os.path.join('.gpu/wheels', f)) for f in os.listdir('.gpu/wheels')) if os.path.isdir('.gpu/wheels') else 0):.1f})"
      + (f"; {dest} ({mib(data_outside):.1f} MiB) is outside .gpu and does not travel" if data_outside else ""))
if total > limit * 2**20:
    sys.exit(f"gpu_prepare: over the {limit:.0f} MiB limit: ignore or remove something, or lower ROWS")
if total > (limit - 4) * 2**20:
    print("gpu_prepare: warning: less than 4 MiB under the limit", file=sys.stderr)
PY
