#!/usr/bin/env bash
# Install cxrdesk from this offline bundle (made by installer/build.sh). No network is used.
#
#   ./install.sh PREFIX [options]
#
# Creates a Python virtual environment at PREFIX with the launcher PREFIX/bin/cxrdesk, installs
# every wheel from wheelhouse/ (pip --no-index: nothing is downloaded), puts the bundled model in
# PREFIX/share/cxrdesk/models/cxrdesk-cxr256 (where cxrdesk looks by default), and adds a desktop
# menu entry and a `cxrdesk` command on the PATH.
#
# Options:
#   --python PY         Python to use (default: the first of python3.X, python3 matching the bundle)
#   --desktop-dir DIR   where the menu entry goes (default: /usr/local/share/applications as root,
#                       else ${XDG_DATA_HOME:-~/.local/share}/applications)
#   --no-desktop        no menu entry
#   --bin-dir DIR       where the `cxrdesk` command link goes (default: /usr/local/bin as root,
#                       else ~/.local/bin)
#   --no-launcher       no link on the PATH (PREFIX/bin/cxrdesk still works)
#   --force             install into an existing non-empty PREFIX that is not a cxrdesk install
#   --no-verify         skip the SHA256SUMS check of the bundle
#   --print-desktop-entry  print the menu entry this install would write, install nothing
#   -h, --help          this text
#
# Uninstall: PREFIX/uninstall.sh
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

die() { echo "install.sh: error: $*" >&2; exit 2; }
note() { echo "install.sh: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX="" PY="" DESKTOP=1 DESKTOP_DIR="" LAUNCHER=1 BIN_DIR="" FORCE=0 VERIFY=1 PRINT_ENTRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PY=$2; shift 2 ;;
        --desktop-dir) [ $# -ge 2 ] || die "--desktop-dir needs a folder"; DESKTOP_DIR=$2; shift 2 ;;
        --no-desktop) DESKTOP=0; shift ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a folder"; BIN_DIR=$2; shift 2 ;;
        --no-launcher) LAUNCHER=0; shift ;;
        --force) FORCE=1; shift ;;
        --no-verify) VERIFY=0; shift ;;
        --print-desktop-entry) PRINT_ENTRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$PREFIX" ] || die "one PREFIX only (got '$PREFIX' and '$1')"; PREFIX=$1; shift ;;
    esac
done

# The menu entry: Exec and TryExec point at PREFIX/bin/cxrdesk, Icon at an absolute file.
desktop_entry() {  # PREFIX ICON
    local tpl="$BUNDLE/share/cxrdesk.desktop.in" entry
    [ -f "$tpl" ] || tpl="$BUNDLE/cxrdesk.desktop.in"   # run from the repository's installer/
    [ -f "$tpl" ] || die "no desktop entry template (share/cxrdesk.desktop.in) in $BUNDLE"
    entry=$(cat "$tpl")
    entry=${entry//@PREFIX@/$1}
    entry=${entry//@ICON@/$2}
    printf '%s\n' "$entry"
}
check_prefix_chars() {
    case "$1" in *'"'*|*'$'*|*'`'*|*'\'*|*'%'*|*$'\n'*) die "PREFIX may not contain \" \$ \` \\ % or newlines" ;; esac
}
if [ "$PRINT_ENTRY" = 1 ]; then
    [ -n "$PREFIX" ] || die "missing PREFIX"
    case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac
    check_prefix_chars "$PREFIX"
    desktop_entry "$PREFIX" "$PREFIX/share/icons/hicolor/256x256/apps/cxrdesk.png"
    exit 0
fi

# --- the bundle ----------------------------------------------------------------------------------
WH="$BUNDLE/wheelhouse"
if [ ! -d "$WH" ]; then
    die "no wheelhouse at $WH.
This script installs from an offline bundle: run it from the folder made by
'installer/build.sh OUTDIR' on a machine with internet (README: Offline classroom install)."
fi
ls "$WH"/cxrdesk-*.whl >/dev/null 2>&1 || die "the wheelhouse $WH has no cxrdesk wheel: the bundle is incomplete; rebuild it with installer/build.sh"
[ -f "$BUNDLE/requirements.txt" ] || die "$BUNDLE/requirements.txt is missing: the bundle is incomplete; rebuild it with installer/build.sh"
[ -n "$PREFIX" ] || { usage >&2; die "missing PREFIX (the folder to install into, e.g. /opt/cxrdesk or ~/cxrdesk)"; }

info() { sed -n "s/^$1=//p" "$BUNDLE/bundle.info" 2>/dev/null | head -1; }
WANT_PY=$(info PYTHON)
MODEL_NAME=$(info MODEL)
case "$(info PLATFORM)" in
    ""|*linux*) ;;
    *) die "this bundle was built for $(info PLATFORM), not Linux (on Windows use install.ps1)" ;;
esac

if [ "$VERIFY" = 1 ] && [ -f "$BUNDLE/SHA256SUMS" ]; then
    if command -v sha256sum >/dev/null; then
        note "checking the bundle's files (SHA256SUMS)"
        (cd "$BUNDLE" && sha256sum --quiet -c SHA256SUMS) \
            || die "some files of the bundle are damaged or missing (copy it again; --no-verify skips this check)"
    else
        note "no sha256sum here; pip still checks every wheel's hash"
    fi
fi

# --- Python --------------------------------------------------------------------------------------
pyver() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
if [ -z "$PY" ]; then
    for c in ${WANT_PY:+python$WANT_PY} python3 python; do
        if command -v "$c" >/dev/null && { [ -z "$WANT_PY" ] || [ "$(pyver "$c")" = "$WANT_PY" ]; }; then PY=$c; break; fi
    done
    [ -n "$PY" ] || die "no Python ${WANT_PY:-3} found; this bundle's wheels are for Python ${WANT_PY:-?} (pass --python PATH)"
fi
command -v "$PY" >/dev/null || die "no Python '$PY'"
GOT_PY=$(pyver "$PY") || die "'$PY' does not run"
[ -z "$WANT_PY" ] || [ "$GOT_PY" = "$WANT_PY" ] \
    || die "'$PY' is Python $GOT_PY but this bundle's wheels are for Python $WANT_PY (pass --python PATH, or rebuild with --python-version $GOT_PY)"
"$PY" -c 'import venv, ensurepip' 2>/dev/null \
    || die "'$PY' cannot create virtual environments (Debian/Ubuntu: install the python3-venv package)"

# --- PREFIX --------------------------------------------------------------------------------------
check_prefix_chars "$PREFIX"
mkdir -p "$PREFIX" || die "cannot create $PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
[ -w "$PREFIX" ] || die "$PREFIX is not writable (run as a user who may write there, or choose another PREFIX)"
MARK="$PREFIX/.cxrdesk-install"
if [ -n "$(ls -A "$PREFIX")" ] && [ ! -f "$MARK" ] && [ "$FORCE" = 0 ]; then
    die "$PREFIX is not empty and holds no earlier cxrdesk install; choose a new folder (or --force)"
fi
T0=$(date +%s)

# pip: only this bundle's wheelhouse, none of this machine's pip configuration (indexes,
# find-links, constraints) and no cache: nothing is looked up anywhere else.
pipenv=(env -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS -u PIP_CONSTRAINT
        -u PIP_REQUIRE_VIRTUALENV -u PIP_TARGET -u PIP_PREFIX -u PIP_USER -u PYTHONPATH -u PYTHONHOME
        PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1)
# What was in PREFIX before the first install (only with --force): uninstall.sh leaves it alone.
if [ -f "$MARK" ]; then
    FOREIGN=$(cat "$PREFIX/.cxrdesk-foreign" 2>/dev/null || true)
    note "replacing the earlier install in $PREFIX"
    if [ -x "$PREFIX/uninstall.sh" ]; then "$PREFIX/uninstall.sh" >/dev/null
    else "${pipenv[@]}" "$PY" -m venv --clear "$PREFIX"; fi
    mkdir -p "$PREFIX"
else
    FOREIGN=$(cd "$PREFIX" && ls -A)
fi
printf '%s\n' "$FOREIGN" > "$PREFIX/.cxrdesk-foreign"
note "creating the environment $PREFIX (Python $GOT_PY)"
"${pipenv[@]}" "$PY" -m venv "$PREFIX" || die "could not create a virtual environment in $PREFIX"
echo "cxrdesk $(info CXRDESK_VERSION) installed from $BUNDLE on $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MARK"

note "installing $(grep -c -- '--hash=' "$BUNDLE/requirements.txt") wheels (no network)"
"${pipenv[@]}" "$PREFIX/bin/python" -m pip install -q --no-index --find-links "$WH" --no-deps \
    --require-hashes --no-cache-dir -r "$BUNDLE/requirements.txt" \
    || die "pip could not install the wheelhouse (see above)"
[ -x "$PREFIX/bin/cxrdesk" ] || die "the install produced no $PREFIX/bin/cxrdesk"

# --- the model: sys.prefix/share/cxrdesk/models/cxrdesk-cxr256 is on cxrdesk's default lookup ----
SHARE="$PREFIX/share"
MODELS="$SHARE/cxrdesk/models"
if [ -f "$BUNDLE/model/cxrdesk-cxr256/model_index.json" ]; then
    mkdir -p "$MODELS"
    rm -rf "$MODELS/cxrdesk-cxr256"
    cp -R "$BUNDLE/model/cxrdesk-cxr256" "$MODELS/cxrdesk-cxr256"
    note "model installed in $MODELS/cxrdesk-cxr256"
else
    echo "install.sh: NOTE: this bundle has no model (bundle.info MODEL=${MODEL_NAME:-?}). cxrdesk will" >&2
    echo "install.sh: NOTE: need 'cxrdesk --model DIR', CXRDESK_MODEL=DIR, or a model folder copied to" >&2
    echo "install.sh: NOTE: $MODELS/cxrdesk-cxr256" >&2
fi

# --- the window's system libraries: Qt's X11 plugin needs a few that minimal systems lack ----------
MISSING_X11=$("$PREFIX/bin/python" -c 'from cxrdesk.ui.app import missing_xcb_packages as m; print(" ".join(m({"DISPLAY": ":0"})))' 2>/dev/null || true)
if [ -n "$MISSING_X11" ]; then
    echo "install.sh: NOTE: the window needs system libraries this machine lacks; install them with" >&2
    echo "install.sh: NOTE:   sudo apt-get install $MISSING_X11" >&2
    echo "install.sh: NOTE: (or from the distribution's install media). 'cxrdesk generate' works without them." >&2
fi

# --- icon, desktop entry, launcher, uninstaller --------------------------------------------------
ICON=""
if [ -f "$BUNDLE/share/cxrdesk.png" ]; then
    mkdir -p "$SHARE/icons/hicolor/256x256/apps"
    cp "$BUNDLE/share/cxrdesk.png" "$SHARE/icons/hicolor/256x256/apps/cxrdesk.png"
    ICON="$SHARE/icons/hicolor/256x256/apps/cxrdesk.png"
fi
if [ -f "$BUNDLE/share/cxrdesk.svg" ]; then
    mkdir -p "$SHARE/icons/hicolor/scalable/apps"
    cp "$BUNDLE/share/cxrdesk.svg" "$SHARE/icons/hicolor/scalable/apps/cxrdesk.svg"
    ICON=${ICON:-$SHARE/icons/hicolor/scalable/apps/cxrdesk.svg}
fi
mkdir -p "$SHARE/applications"
desktop_entry "$PREFIX" "${ICON:-cxrdesk}" > "$SHARE/applications/cxrdesk.desktop"

if [ "$(id -u)" = 0 ]; then sysdata=/usr/local/share; sysbin=/usr/local/bin
else sysdata=${XDG_DATA_HOME:-$HOME/.local/share}; sysbin=$HOME/.local/bin; fi
DESKTOP_DIR=${DESKTOP_DIR:-$sysdata/applications}
BIN_DIR=${BIN_DIR:-$sysbin}
: > "$PREFIX/.cxrdesk-links"
if [ "$DESKTOP" = 1 ]; then
    mkdir -p "$DESKTOP_DIR"
    cp "$SHARE/applications/cxrdesk.desktop" "$DESKTOP_DIR/cxrdesk.desktop"
    echo "$DESKTOP_DIR/cxrdesk.desktop" >> "$PREFIX/.cxrdesk-links"
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$DESKTOP_DIR" 2>/dev/null || true
    note "menu entry: $DESKTOP_DIR/cxrdesk.desktop"
fi
if [ "$LAUNCHER" = 1 ]; then
    mkdir -p "$BIN_DIR"
    if [ -e "$BIN_DIR/cxrdesk" ] && [ ! -L "$BIN_DIR/cxrdesk" ]; then
        note "NOTE: $BIN_DIR/cxrdesk exists and is not a link; left alone (use $PREFIX/bin/cxrdesk)"
    else
        ln -sfn "$PREFIX/bin/cxrdesk" "$BIN_DIR/cxrdesk"
        echo "$BIN_DIR/cxrdesk" >> "$PREFIX/.cxrdesk-links"
        note "command: $BIN_DIR/cxrdesk"
        case ":$PATH:" in *":$BIN_DIR:"*) ;; *) note "NOTE: $BIN_DIR is not on your PATH" ;; esac
    fi
fi
cat > "$PREFIX/uninstall.sh" <<'EOF'
#!/usr/bin/env bash
# Remove this cxrdesk install: its menu entry, its command link and what install.sh put in PREFIX
# (the folder itself goes when nothing else is left in it).
set -euo pipefail
PREFIX=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -f "$PREFIX/.cxrdesk-install" ] || { echo "uninstall.sh: $PREFIX is not a cxrdesk install" >&2; exit 2; }
while IFS= read -r f; do
    [ -n "$f" ] || continue
    if [ -L "$f" ] || grep -qs "$PREFIX/bin/cxrdesk" "$f"; then rm -f "$f"; fi
done < "$PREFIX/.cxrdesk-links"
# Every top-level entry that install.sh created; entries that were there before (install.sh --force
# into a non-empty folder, listed in .cxrdesk-foreign) lose only cxrdesk's own files.
for e in "$PREFIX"/* "$PREFIX"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    name=$(basename "$e")
    if grep -qxF -- "$name" "$PREFIX/.cxrdesk-foreign" 2>/dev/null; then
        rm -rf "$e/share/cxrdesk" "$e/cxrdesk" "$e/hicolor/256x256/apps/cxrdesk.png" \
               "$e/hicolor/scalable/apps/cxrdesk.svg" "$e/applications/cxrdesk.desktop"
    elif [ "$name" != uninstall.sh ]; then
        rm -rf "$e"
    fi
done
rm -f "$PREFIX/uninstall.sh"
if rmdir "$PREFIX" 2>/dev/null; then echo "uninstall.sh: removed $PREFIX"
else echo "uninstall.sh: removed cxrdesk from $PREFIX (other files there were left alone)"; fi
EOF
chmod +x "$PREFIX/uninstall.sh"

VERSION=$("$PREFIX/bin/cxrdesk" --version 2>&1) || die "the installed cxrdesk does not start: $VERSION"
T1=$(date +%s)
note "$VERSION installed in $PREFIX in $((T1 - T0)) s ($(du -sh "$PREFIX" | cut -f1))"
note "start it from the menu, or run: $PREFIX/bin/cxrdesk   (headless: cxrdesk generate \"Normal chest radiograph\" -o x.png)"
