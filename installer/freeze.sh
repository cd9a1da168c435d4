#!/usr/bin/env bash
# One-folder frozen build (PyInstaller) from an offline bundle made by installer/build.sh:
#
#   installer/freeze.sh BUNDLE OUTDIR [--work DIR] [--pyinstaller SPEC]
#
# Installs the bundle's wheels into a throw-away build environment (BUNDLE/install.sh, no desktop
# entry), adds PyInstaller (from the package index: run this on a connected machine), and runs
# installer/cxrdesk.spec with the bundle's model. Result: OUTDIR/cxrdesk/cxrdesk (the CLI and,
# with no subcommand, the GUI). Build on the platform you target (PyInstaller does not cross-build).
set -euo pipefail
die() { echo "freeze.sh: error: $*" >&2; exit 2; }
note() { echo "freeze.sh: $*"; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

BUNDLE="" OUT="" WORK="" PYI_SPEC="pyinstaller>=6.10"
while [ $# -gt 0 ]; do
    case "$1" in
        --work) [ $# -ge 2 ] || die "--work needs a folder"; WORK=$2; shift 2 ;;
        --pyinstaller) [ $# -ge 2 ] || die "--pyinstaller needs a requirement"; PYI_SPEC=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) if [ -z "$BUNDLE" ]; then BUNDLE=$1; elif [ -z "$OUT" ]; then OUT=$1; else die "too many arguments"; fi; shift ;;
    esac
done
[ -n "$BUNDLE" ] && [ -n "$OUT" ] || die "usage: freeze.sh BUNDLE OUTDIR (BUNDLE from installer/build.sh)"
[ -x "$BUNDLE/install.sh" ] && [ -d "$BUNDLE/wheelhouse" ] || die "$BUNDLE is not a bundle made by installer/build.sh"
BUNDLE=$(cd "$BUNDLE" && pwd)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
[ ! -e "$OUT/cxrdesk" ] || die "$OUT/cxrdesk exists; remove it first"
if [ -z "$WORK" ]; then WORK=$(mktemp -d "${TMPDIR:-/tmp}/cxrdesk-freeze.XXXXXX"); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"

T0=$(date +%s)
"$BUNDLE/install.sh" "$WORK/venv" --no-desktop --no-launcher --no-verify
note "adding $PYI_SPEC to the build environment"
"$WORK/venv/bin/python" -m pip install -q "$PYI_SPEC"
model=""
[ -f "$BUNDLE/model/cxrdesk-cxr256/model_index.json" ] && model="$BUNDLE/model/cxrdesk-cxr256"
icon=""
[ -f "$BUNDLE/share/cxrdesk.ico" ] && icon="$BUNDLE/share/cxrdesk.ico"
note "running PyInstaller (several minutes)"
(cd "$WORK" && CXRDESK_FREEZE_MODEL="${model:-/nonexistent}" CXRDESK_FREEZE_ICON="$icon" \
    "$WORK/venv/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$OUT" --workpath "$WORK/build" \
    "$HERE/cxrdesk.spec")
T1=$(date +%s)
"$OUT/cxrdesk/cxrdesk" --version || die "the frozen build does not start"
note "frozen build in $OUT/cxrdesk ($(du -sh "$OUT/cxrdesk" | cut -f1), $(find "$OUT/cxrdesk" -type f | wc -l) files; $((T1 - T0)) s)"
