"""Fast checks of the offline installer (installer/): script syntax, the desktop entry, clear
refusals, and the wheelhouse lock logic on hand-made wheels. No network and no real build here:
bench/bench_install.sh builds a bundle and installs it offline."""
from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer"
SCRIPTS = [INSTALLER / "build.sh", INSTALLER / "install.sh", INSTALLER / "freeze.sh",
           REPO / "bench" / "bench_install.sh"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(args, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60,
                          env=env, **kw)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_syntax_and_help(script):
    assert script.is_file()
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    r = run(["bash", "-n", script])
    assert r.returncode == 0, r.stderr
    r = run(["bash", script, "--help"])
    assert r.returncode == 0, r.stderr
    assert "set -euo" not in r.stdout and len(r.stdout.splitlines()) > 3


def desktop_entry(prefix: str) -> configparser.ConfigParser:
    r = run(["bash", INSTALLER / "install.sh", "--print-desktop-entry", prefix])
    assert r.returncode == 0, r.stderr
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str  # keys are case-sensitive
    cp.read_string(r.stdout)
    return cp, r.stdout


def test_desktop_entry_content(tmp_path):
    prefix = "/opt/class room/cxrdesk"
    cp, text = desktop_entry(prefix)
    e = cp["Desktop Entry"]
    assert e["Type"] == "Application"
    assert e["Name"] == "cxrdesk"
    assert "not for diagnosis" in e["Comment"].lower()
    assert e["Exec"] == f'"{prefix}/bin/cxrdesk" gui'       # quoted: the path has a space
    assert e["TryExec"] == f"{prefix}/bin/cxrdesk"
    assert e["Icon"] == f"{prefix}/share/icons/hicolor/256x256/apps/cxrdesk.png"
    assert e["Terminal"] == "false"
    assert "Education" in e["Categories"].split(";") and e["Categories"].endswith(";")
    assert "@" not in text
    validator = shutil.which("desktop-file-validate")
    if validator:
        f = tmp_path / "cxrdesk.desktop"
        f.write_text(text)
        r = run([validator, f])
        assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_desktop_entry_refuses_unquotable_prefix():
    r = run(["bash", INSTALLER / "install.sh", "--print-desktop-entry", '/opt/a"b'])
    assert r.returncode == 2 and "may not contain" in r.stderr


def fake_bundle(tmp_path: Path, wheelhouse=True, cxrdesk_wheel=True, python="3.11") -> Path:
    b = tmp_path / "bundle"
    (b / "share").mkdir(parents=True)
    shutil.copy(INSTALLER / "install.sh", b / "install.sh")
    shutil.copy(INSTALLER / "cxrdesk.desktop.in", b / "share")
    if wheelhouse:
        (b / "wheelhouse").mkdir()
        if cxrdesk_wheel:
            (b / "wheelhouse" / "cxrdesk-0.1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
        (b / "requirements.txt").write_text("cxrdesk==0.1.0 --hash=sha256:00\n")
        (b / "bundle.info").write_text(f"CXRDESK_VERSION=0.1.0\nPYTHON={python}\nPLATFORM=linux_x86_64\nMODEL=none\n")
    return b


def test_install_refuses_missing_wheelhouse(tmp_path):
    b = fake_bundle(tmp_path, wheelhouse=False)
    prefix = tmp_path / "prefix"
    r = run(["bash", b / "install.sh", prefix])
    assert r.returncode == 2
    assert "no wheelhouse" in r.stderr and "build.sh" in r.stderr
    assert r.stderr.count("\n") <= 4
    assert not prefix.exists(), "nothing may be created when the bundle is incomplete"


def test_install_refuses_wheelhouse_without_cxrdesk(tmp_path):
    b = fake_bundle(tmp_path, cxrdesk_wheel=False)
    r = run(["bash", b / "install.sh", tmp_path / "prefix"])
    assert r.returncode == 2 and "no cxrdesk wheel" in r.stderr
    assert not (tmp_path / "prefix").exists()


def test_install_refuses_other_python_and_damaged_bundle(tmp_path):
    b = fake_bundle(tmp_path, python="2.7")
    r = run(["bash", b / "install.sh", tmp_path / "prefix", "--python", sys.executable])
    assert r.returncode == 2 and "for Python 2.7" in r.stderr
    (b / "SHA256SUMS").write_text("0" * 64 + "  ./requirements.txt\n")
    r = run(["bash", b / "install.sh", tmp_path / "prefix", "--python", sys.executable])
    if shutil.which("sha256sum"):
        assert r.returncode == 2 and "damaged" in r.stderr
    assert not (tmp_path / "prefix").exists()


def test_install_refuses_foreign_nonempty_prefix(tmp_path):
    b = fake_bundle(tmp_path, python=f"{sys.version_info[0]}.{sys.version_info[1]}")
    prefix = tmp_path / "home-of-someone"
    prefix.mkdir()
    (prefix / "thesis.tex").write_text("keep me")
    r = run(["bash", b / "install.sh", prefix, "--python", sys.executable])
    assert r.returncode == 2 and "not empty" in r.stderr
    assert sorted(p.name for p in prefix.iterdir()) == ["thesis.tex"]


def make_app_wheel(wheelhouse: Path) -> Path:
    """A stand-in cxrdesk wheel (stdlib only) whose `cxrdesk` command prints a version."""
    whl = wheelhouse / "cxrdesk-0.0.1-py3-none-any.whl"
    files = {
        "cxrdesk/__init__.py": "",
        "cxrdesk/cli.py": "import sys\ndef main():\n    print('cxrdesk 0.0.1 (stand-in)', sys.prefix)\n",
        "cxrdesk-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: cxrdesk\nVersion: 0.0.1\n",
        "cxrdesk-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "cxrdesk-0.0.1.dist-info/entry_points.txt": "[console_scripts]\ncxrdesk = cxrdesk.cli:main\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "cxrdesk-0.0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("cxrdesk-0.0.1.dist-info/RECORD", record)
    return whl


@pytest.mark.skipif(sys.platform != "linux", reason="install.sh is for Linux")
def test_install_reinstall_uninstall_with_a_stand_in_wheel(tmp_path):
    """The whole install.sh path in seconds: a one-file wheel instead of the real wheelhouse."""
    import hashlib

    b = tmp_path / "bundle"
    (b / "wheelhouse").mkdir(parents=True)
    (b / "share").mkdir()
    shutil.copy(INSTALLER / "install.sh", b / "install.sh")
    shutil.copy(INSTALLER / "cxrdesk.desktop.in", b / "share")
    shutil.copy(REPO / "resources" / "cxrdesk.png", b / "share")
    whl = make_app_wheel(b / "wheelhouse")
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    (b / "requirements.txt").write_text(f"cxrdesk==0.0.1 --hash=sha256:{digest}\n")
    (b / "model" / "cxrdesk-cxr256").mkdir(parents=True)
    (b / "model" / "cxrdesk-cxr256" / "model_index.json").write_text("{}")
    (b / "bundle.info").write_text(f"CXRDESK_VERSION=0.0.1\nPYTHON={sys.version_info[0]}.{sys.version_info[1]}\n"
                                   "PLATFORM=linux_x86_64\nMODEL=cxrdesk-cxr256\n")
    sums = []
    for f in sorted(p for p in b.rglob("*") if p.is_file()):
        sums.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  ./{f.relative_to(b)}")
    (b / "SHA256SUMS").write_text("\n".join(sums) + "\n")

    prefix, apps, bins = tmp_path / "my prefix", tmp_path / "apps", tmp_path / "bin"
    prefix.mkdir()
    (prefix / "notes.txt").write_text("mine")   # a foreign file: needs --force, survives uninstall
    args = [b / "install.sh", prefix, "--python", sys.executable, "--desktop-dir", apps, "--bin-dir", bins]
    r = run(["bash", *args])
    assert r.returncode == 2 and "not empty" in r.stderr
    r = run(["bash", *args, "--force"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cxrdesk 0.0.1 (stand-in)" in r.stdout and "installed in" in r.stdout
    out = subprocess.run([prefix / "bin" / "cxrdesk"], capture_output=True, text=True).stdout
    assert out.strip() == f"cxrdesk 0.0.1 (stand-in) {prefix}"   # the venv is PREFIX itself
    assert (prefix / "share/cxrdesk/models/cxrdesk-cxr256/model_index.json").is_file()
    assert (prefix / "share/icons/hicolor/256x256/apps/cxrdesk.png").is_file()
    assert os.path.realpath(bins / "cxrdesk") == str(prefix / "bin" / "cxrdesk")
    entry = (apps / "cxrdesk.desktop").read_text()
    assert f'Exec="{prefix}/bin/cxrdesk" gui' in entry
    assert f"Icon={prefix}/share/icons/hicolor/256x256/apps/cxrdesk.png" in entry

    r = run(["bash", *args])                    # again: replaces the earlier install
    assert r.returncode == 0 and "replacing the earlier install" in r.stdout, r.stdout + r.stderr

    r = run([prefix / "uninstall.sh"])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in prefix.iterdir()) == ["notes.txt"]
    assert not (apps / "cxrdesk.desktop").exists() and not os.path.lexists(bins / "cxrdesk")


def test_build_refuses_bad_model_before_downloading(tmp_path):
    r = run(["bash", INSTALLER / "build.sh"])
    assert r.returncode == 2 and "missing OUTDIR" in r.stderr
    out = tmp_path / "out"
    r = run(["bash", INSTALLER / "build.sh", out, "--model", tmp_path / "no-such-model"])
    assert r.returncode == 2 and "not a model folder" in r.stderr
    assert not out.exists()


def test_ps1_installs_offline_only():
    text = (INSTALLER / "install.ps1").read_text()
    for needle in ("--no-index", "--require-hashes", "--no-deps", "share\\cxrdesk\\models", "no wheelhouse"):
        assert needle in text


# --- wheelhouse.py: the lock step of build.sh --------------------------------------------------

def _wheelhouse_module():
    spec = importlib.util.spec_from_file_location("cxr_wheelhouse", INSTALLER / "wheelhouse.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_wheel(d: Path, name: str, version: str, requires=()):
    dist = name.replace("-", "_")
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(d / f"{dist}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{dist}/__init__.py", "")
        zf.writestr(f"{dist}-{version}.dist-info/METADATA", meta)


def test_wheelhouse_lock_trims_and_pins(tmp_path):
    wh = tmp_path / "wh"
    wh.mkdir()
    make_wheel(wh, "cxrdesk", "0.1.0", ["Encoder>=0.1", "tqdm", "pytest; extra == 'test'"])
    make_wheel(wh, "encoder", "0.1.0", ["sentence-transformers", "safetensors"])
    make_wheel(wh, "sentence-transformers", "6.0", ["scipy"])
    make_wheel(wh, "scipy", "1.0")
    make_wheel(wh, "safetensors", "0.4")
    make_wheel(wh, "tqdm", "4.0", ["colorama; platform_system == 'Windows'"])
    make_wheel(wh, "colorama", "0.4")
    make_wheel(wh, "pytest", "8.0")
    out = tmp_path / "requirements.txt"
    mod = _wheelhouse_module()
    rc = mod.main(["lock", str(wh), "--root", "cxrdesk", "--skip-dep", "encoder:sentence-transformers",
                   "--platform", "linux_x86_64", "--out", str(out)])
    assert rc == 0
    pins = [line.split()[0] for line in out.read_text().splitlines() if not line.startswith("#")]
    assert pins == ["cxrdesk==0.1.0", "encoder==0.1.0", "safetensors==0.4", "tqdm==4.0"]
    assert all("--hash=sha256:" in line for line in out.read_text().splitlines() if not line.startswith("#"))
    left = sorted(p.name.split("-")[0] for p in wh.glob("*.whl"))
    assert left == ["cxrdesk", "encoder", "safetensors", "tqdm"]   # no pytest, scipy, colorama


def test_wheelhouse_lock_windows_markers_and_missing(tmp_path):
    wh = tmp_path / "wh"
    wh.mkdir()
    make_wheel(wh, "cxrdesk", "0.1.0", ["tqdm"])
    make_wheel(wh, "tqdm", "4.0", ["colorama; platform_system == 'Windows'"])
    make_wheel(wh, "colorama", "0.4")
    out = tmp_path / "req.txt"
    mod = _wheelhouse_module()
    assert mod.main(["lock", str(wh), "--root", "cxrdesk", "--platform", "win_amd64", "--out", str(out)]) == 0
    assert "colorama==0.4" in out.read_text()
    (wh / "colorama-0.4-py3-none-any.whl").unlink()
    with pytest.raises(SystemExit, match="colorama"):
        mod.main(["lock", str(wh), "--root", "cxrdesk", "--platform", "win_amd64", "--out", str(out)])
