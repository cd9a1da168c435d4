#!/usr/bin/env bash
# Offline-install benchmark (prints figures, asserts only that each step works):
#
#   bench/bench_install.sh [--model DIR] [--frozen] [--keep] [--work DIR]
#
# 1. installer/build.sh makes a bundle (needs the package index: run on a connected machine);
# 2. the bundle's install.sh installs it into a fresh PREFIX with the network cut off
#    (`unshare -n`; as root also a private mount namespace that hides this machine's local wheel
#    folders and pip cache, so that only the bundle can be used);
# 3. `cxrdesk generate` and `cxrdesk info` run from that PREFIX, still offline;
# 4. with --frozen: installer/freeze.sh makes the PyInstaller one-folder build, whose --version and a
#    headless generate are timed offline;
# 5. where Xvfb and xwininfo exist: seconds until the main window is viewable (installed and frozen),
#    offline, on a private X display (warm file cache: the figures of a second start).
# Without --model, the repository's models/cxrdesk-cxr256 is used, else a tiny random model
# (make_tiny_model) so that the install path is measured before the real model exists.
# Run it niced on a shared machine: nice -n 10 bench/bench_install.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "bench_install: error: $*" >&2; exit 2; }
say() { echo "bench_install: $*"; }

MODEL="" FROZEN=0 KEEP=0 WORK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL=$2; shift 2 ;;
        --frozen) FROZEN=1; shift ;;
        --keep) KEEP=1; shift ;;
        --work) WORK=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cxrdesk-bench-install.XXXXXX")}
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
XPID="" GUIPID=""
cleanup() {
    [ -z "$GUIPID" ] || kill "$GUIPID" 2>/dev/null || true
    [ -z "$XPID" ] || kill "$XPID" 2>/dev/null || true
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
mb() { du -sb "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

# --- the model ------------------------------------------------------------------------------------
if [ -z "$MODEL" ]; then
    if [ -f "$REPO/models/cxrdesk-cxr256/model_index.json" ]; then
        MODEL="$REPO/models/cxrdesk-cxr256"
    else
        DEVPY=${DEVPY:-$REPO/.venv/bin/python}
        [ -x "$DEVPY" ] || DEVPY=python3
        say "no models/cxrdesk-cxr256 yet: bundling a tiny random model (it draws noise)"
        (cd "$REPO" && "$DEVPY" -c "from tests.fixtures import make_tiny_model; make_tiny_model('$WORK/tiny-model')") \
            || die "could not make a tiny model (set DEVPY to a Python with cxrdesk installed, or pass --model)"
        MODEL="$WORK/tiny-model"
    fi
fi

# --- isolation: no network, and (as root) none of this machine's local wheel folders ---------------
ISO=()
if unshare -n true 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && unshare -n -m true 2>/dev/null; then
        hide=""
        for d in /opt/wheels /opt/pypi /opt/pypi-more "$HOME/.cache/pip" "${PIP_FIND_LINKS:-}"; do
            [ -n "$d" ] && [ -d "$d" ] && hide="$hide mount -t tmpfs none '$d';"
        done
        ISO=(unshare -n -m --propagation private sh -c "$hide exec \"\$0\" \"\$@\"")
    else
        ISO=(unshare -n)
    fi
else
    say "WARNING: unshare -n is not available here; the install runs WITH network access"
fi
offline() { "${ISO[@]}" "$@"; }
if [ ${#ISO[@]} -gt 0 ]; then
    if offline python3 -c "import socket; socket.create_connection(('pypi.org', 443), timeout=5)" 2>/dev/null; then
        die "the network is still reachable inside the isolation"
    fi
    say "isolation: ${ISO[*]:0:4} ...  (pypi.org unreachable inside: checked)"
fi

# --- 1. build ---------------------------------------------------------------------------------------
t0=$(now)
"$REPO/installer/build.sh" "$WORK/bundle" --model "$MODEL" > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; die "build.sh failed (log above)"; }
t1=$(now)
BUILD_S=$(secs "$t0" "$t1")
grep -E "^build.sh: (bundle ready|cxrdesk )" "$WORK/build.log" || true

# --- 2. offline install -------------------------------------------------------------------------------
t0=$(now)
offline env HOME="$WORK/home" "$WORK/bundle/install.sh" "$WORK/prefix" \
    --desktop-dir "$WORK/home/applications" --bin-dir "$WORK/home/bin" > "$WORK/install.log" 2>&1 \
    || { tail -30 "$WORK/install.log"; die "install.sh failed offline (log above)"; }
t1=$(now)
INSTALL_S=$(secs "$t0" "$t1")
tail -2 "$WORK/install.log"
test -x "$WORK/prefix/bin/cxrdesk" || die "no PREFIX/bin/cxrdesk"
test -f "$WORK/prefix/share/cxrdesk/models/cxrdesk-cxr256/model_index.json" || die "the model was not installed"
test -f "$WORK/home/applications/cxrdesk.desktop" || die "no desktop entry"
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$WORK/home/applications/cxrdesk.desktop" || die "invalid desktop entry"
fi

# --- 3. generate + info, offline, from a clean environment (default model lookup, no CXRDESK_MODEL) ---
runenv=(env -i PATH=/usr/bin:/bin HOME="$WORK/home" LANG=C.UTF-8)
t0=$(now)
offline "${runenv[@]}" "$WORK/prefix/bin/cxrdesk" generate "Normal chest radiograph" -o "$WORK/x.png" \
    --steps 20 --seed 1 --quiet > "$WORK/generate.log" 2>&1 || { cat "$WORK/generate.log"; die "generate failed"; }
t1=$(now)
GEN_S=$(secs "$t0" "$t1")
test -s "$WORK/x.png" || die "generate wrote no image"
offline "${runenv[@]}" "$WORK/prefix/bin/cxrdesk" info > "$WORK/info.log" 2>&1 || { cat "$WORK/info.log"; die "info failed"; }
grep -E "^(cxrdesk |model:|folder:|device:)" "$WORK/info.log" || head -5 "$WORK/info.log"
grep -q "share/cxrdesk/models/cxrdesk-cxr256" "$WORK/info.log" || die "info does not show the installed model folder"
t0=$(now); offline "${runenv[@]}" "$WORK/prefix/bin/cxrdesk" --version >/dev/null; t1=$(now)
VER_S=$(secs "$t0" "$t1")
# five images: the UNet is warmed up first (ONNX Runtime, exported into the user's cache); which
# engine drew them is in each PNG's metadata
engine_of() { "$WORK/prefix/bin/python" -c "import sys; from cxrdesk.core.imaging.pngio import read_png; print(read_png(sys.argv[1]).metadata.get('unet_engine'))" "$1"; }
t0=$(now)
offline "${runenv[@]}" "$WORK/prefix/bin/cxrdesk" generate "Normal chest radiograph" -o "$WORK/n.png" --n 5 \
    --steps 20 --seed 1 --quiet > "$WORK/generate5.log" 2>&1 || { cat "$WORK/generate5.log"; die "generate --n 5 failed"; }
t1=$(now)
GEN5_S=$(secs "$t0" "$t1")
ENGINE=$(engine_of "$WORK/n_001.png")

# --- 4. frozen build ------------------------------------------------------------------------------------
if [ "$FROZEN" = 1 ]; then
    t0=$(now)
    "$REPO/installer/freeze.sh" "$WORK/bundle" "$WORK/frozen" --work "$WORK/freeze-work" > "$WORK/freeze.log" 2>&1 \
        || { tail -30 "$WORK/freeze.log"; die "freeze.sh failed (log above)"; }
    t1=$(now)
    FREEZE_S=$(secs "$t0" "$t1")
    rm -rf "$WORK/freeze-work"
    FX="$WORK/frozen/cxrdesk/cxrdesk"
    t0=$(now); offline "${runenv[@]}" "$FX" --version; t1=$(now)
    FVER_S=$(secs "$t0" "$t1")
    t0=$(now)
    offline "${runenv[@]}" QT_QPA_PLATFORM=offscreen "$FX" generate "Normal chest radiograph" -o "$WORK/f.png" \
        --steps 20 --seed 1 --quiet > "$WORK/fgenerate.log" 2>&1 || { cat "$WORK/fgenerate.log"; die "frozen generate failed"; }
    t1=$(now)
    FGEN_S=$(secs "$t0" "$t1")
    test -s "$WORK/f.png" || die "frozen generate wrote no image"
    offline "${runenv[@]}" "$FX" info > "$WORK/finfo.log" 2>&1 || { cat "$WORK/finfo.log"; die "frozen info failed"; }
    grep -q "_internal/models/cxrdesk-cxr256" "$WORK/finfo.log" || { cat "$WORK/finfo.log"; die "frozen info does not show the bundled model"; }
    t0=$(now)
    offline "${runenv[@]}" QT_QPA_PLATFORM=offscreen "$FX" generate "Normal chest radiograph" -o "$WORK/fn.png" --n 5 \
        --steps 20 --seed 1 --quiet > "$WORK/fgenerate5.log" 2>&1 || { cat "$WORK/fgenerate5.log"; die "frozen generate --n 5 failed"; }
    t1=$(now)
    FGEN5_S=$(secs "$t0" "$t1")
    FENGINE=$(engine_of "$WORK/fn_001.png")
fi

# --- 5. time to a viewable main window (needs Xvfb + xwininfo) ----------------------------------------
window_s() {  # CMD -> seconds until the main window is viewable, or "n/a"
    local t0 t1 pid id i
    t0=$(now)
    # a simple command, not the offline() function: $! is then the app itself (unshare, sh and env
    # exec into it), so that kill reaches it
    "${ISO[@]}" "${runenv[@]}" DISPLAY=":$XDISP" CXRDESK_DATA_DIR="$WORK/gui-data" "$@" > "$WORK/gui.log" 2>&1 &
    pid=$!; GUIPID=$pid
    for i in $(seq 1 600); do
        id=$(DISPLAY=":$XDISP" xwininfo -root -tree 2>/dev/null | grep '"cxrdesk - ' | awk '{print $1}' | head -1 || true)
        if [ -n "$id" ]; then
            case "$(DISPLAY=":$XDISP" xwininfo -id "$id" 2>/dev/null || true)" in
                *IsViewable*) t1=$(now); break ;;
            esac
        fi
        sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    GUIPID=""
    if [ -n "${t1:-}" ]; then secs "$t0" "$t1"; else echo "n/a"; fi
}
WIN_S="" FWIN_S=""
if command -v Xvfb >/dev/null && command -v xwininfo >/dev/null; then
    XDISP=$((70 + RANDOM % 20))
    Xvfb ":$XDISP" -screen 0 1400x900x24 -nolisten tcp > "$WORK/xvfb.log" 2>&1 &
    XPID=$!
    sleep 1
    window_s "$WORK/prefix/bin/cxrdesk" >/dev/null   # first start fills the file cache
    WIN_S=$(window_s "$WORK/prefix/bin/cxrdesk")
    if [ "$FROZEN" = 1 ]; then
        window_s "$WORK/frozen/cxrdesk/cxrdesk" >/dev/null
        FWIN_S=$(window_s "$WORK/frozen/cxrdesk/cxrdesk")
    fi
    kill "$XPID" 2>/dev/null || true
    wait "$XPID" 2>/dev/null || true
    XPID=""
fi

# --- figures -------------------------------------------------------------------------------------------
echo
echo "cxrdesk offline install ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); model: $(basename "$MODEL"))"
printf '  %-44s %s\n' "bundle size (wheelhouse + model + scripts)" "$(mb "$WORK/bundle")  ($(ls "$WORK/bundle/wheelhouse" | wc -l) wheels; wheelhouse $(mb "$WORK/bundle/wheelhouse"))"
printf '  %-44s %s s\n' "build.sh (wheel + downloads/cache + lock)" "$BUILD_S"
printf '  %-44s %s s\n' "install.sh, offline" "$INSTALL_S"
printf '  %-44s %s\n' "installed size (PREFIX)" "$(mb "$WORK/prefix")"
printf '  %-44s %s s\n' "cxrdesk --version (installed)" "$VER_S"
printf '  %-44s %s s\n' "cxrdesk generate, 20 steps, offline" "$GEN_S"
printf '  %-44s %s s  (UNet: %s)\n' "cxrdesk generate --n 5, offline" "$GEN5_S" "$ENGINE"
[ -z "$WIN_S" ] || printf '  %-44s %s s\n' "cxrdesk (GUI): main window viewable" "$WIN_S"
if [ "$FROZEN" = 1 ]; then
    printf '  %-44s %s s\n' "freeze.sh (PyInstaller one-folder)" "$FREEZE_S"
    printf '  %-44s %s  (%s files)\n' "frozen build size" "$(mb "$WORK/frozen/cxrdesk")" "$(find "$WORK/frozen/cxrdesk" -type f | wc -l)"
    printf '  %-44s %s s\n' "frozen --version, offline" "$FVER_S"
    printf '  %-44s %s s\n' "frozen generate, 20 steps, offline" "$FGEN_S"
    printf '  %-44s %s s  (UNet: %s)\n' "frozen generate --n 5, offline" "$FGEN5_S" "$FENGINE"
    [ -z "$FWIN_S" ] || printf '  %-44s %s s\n' "frozen GUI: main window viewable" "$FWIN_S"
fi
[ "$KEEP" = 1 ] && echo "  (kept in $WORK)"
exit 0
