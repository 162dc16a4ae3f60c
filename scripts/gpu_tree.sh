#!/usr/bin/env bash
# The device call sends the checkout's tracked and untracked-not-ignored files, at most 64 MiB, and the
# committed results/ alone is about that much. Around a device call, keep results/ at home:
#
#   bash scripts/gpu_tree.sh hide      # before: a temporary branch `gpu-call` whose one commit untracks
#                                      # results/ (the files stay on disk, ignored via .git/info/exclude)
#   ... the device call (carry [".gpu"]) ...
#   bash scripts/gpu_tree.sh restore   # after: back on the branch you were on, results/ tracked again,
#                                      # the temporary branch and the exclude line gone
#
# `hide` refuses an unclean tree (commit first: the call should run committed code) and a second hide.
# A results folder the GPU run should resume travels in .gpu/resume (scripts/gpu_prepare.sh, RESUME=...).
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-path info/exclude)"
saved="$(git rev-parse --git-path gpu-call-branch)"
case "${1:-}" in
    hide)
        [ ! -f "$saved" ] || { echo "gpu_tree: already hidden (run: bash scripts/gpu_tree.sh restore)" >&2; exit 2; }
        git diff --quiet HEAD && [ -z "$(git ls-files -o --exclude-standard)" ] \
            || { echo "gpu_tree: commit or remove your changes first" >&2; exit 2; }
        git rev-parse --abbrev-ref HEAD > "$saved"
        git checkout -q -b gpu-call
        git rm -r -q --cached results
        mkdir -p "$(dirname "$exclude")" && echo "/results/" >> "$exclude"
        git commit -q -m "TEMPORARY (scripts/gpu_tree.sh): results/ untracked for a device call"
        echo "gpu_tree: results/ hidden on branch gpu-call (from $(cat "$saved")); restore after the call"
        ;;
    restore)
        [ -f "$saved" ] || { echo "gpu_tree: nothing to restore" >&2; exit 2; }
        git checkout -q "$(cat "$saved")"   # the ignored copies on disk are the same files: git rewrites them
        sed -i '\#^/results/$#d' "$exclude"
        git branch -q -D gpu-call
        rm -f "$saved"
        git status --short | head -5
        echo "gpu_tree: back on $(git rev-parse --abbrev-ref HEAD), results/ tracked"
        ;;
    *)
        echo "usage: bash scripts/gpu_tree.sh hide|restore" >&2; exit 2 ;;
esac
