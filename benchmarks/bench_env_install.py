"""The plugin's own science environment: install time and size of the core part, beside the former
installer in the same run.

Run:  .venv/bin/python benchmarks/bench_env_install.py [--python /usr/bin/python3] [--repeat 1]

* Own environment (processing_provider/envsetup.py): a virtual environment made from Debian's Python
  without its site packages, the core part from resources/env/requirements.lock; timed with pip's
  cache (a machine that installed before) and without it (``PIP_NO_CACHE_DIR=1``: every wheel
  downloaded from the configured index); then an import check of every core package.
* Baseline (the former classxrf:dependencies): ``pip install --target <profile>/python/dependencies``
  of the same packages with Debian's Python, then the import check that QGIS's Python would make
  with that folder appended to ``sys.path`` (Debian's own packages come first there).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processing_provider import envsetup  # noqa: E402  (no QGIS import in this module)


def own_env(python, cache):
    tmp = Path(tempfile.mkdtemp(prefix="classxrf_env_"))
    env_dir = tmp / "classxrf-env"
    if not cache:
        os.environ["PIP_NO_CACHE_DIR"] = "1"
    try:
        t0 = time.perf_counter()
        rec = envsetup.run_plan(envsetup.plan(env_dir, ["core"], python=python), env_dir, log=lambda line: None,
                                python=python)
        dt = time.perf_counter() - t0
        found, missing = envsetup.check(env_dir, ["core"])
        return dt, rec["size_mb"], found, missing
    finally:
        os.environ.pop("PIP_NO_CACHE_DIR", None)
        shutil.rmtree(tmp, ignore_errors=True)


def former_installer(python):
    tmp = Path(tempfile.mkdtemp(prefix="classxrf_target_"))
    try:
        reqs = list(envsetup.PARTS["core"][0])
        t0 = time.perf_counter()
        proc = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--target", str(tmp),
                               "-c", str(envsetup.LOCK_FILE), *reqs], capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            return dt, envsetup.dir_size_mb(tmp), {}, {"pip": envsetup.failure_reason(proc.stdout.splitlines())}
        script = ("import importlib, json, sys\nsys.path.append(%r)\nout = {}\n"
                  "for n in %r:\n    try:\n        m = importlib.import_module(n); out[n] = str(getattr(m, '__version__', '?'))\n"
                  "    except Exception as e:\n        out[n] = 'FAILS: ' + type(e).__name__ + ': ' + str(e)[:80]\n"
                  "print(json.dumps(out))" % (str(tmp), list(envsetup.PARTS["core"][1])))
        res = json.loads(subprocess.run([python, "-c", script], capture_output=True, text=True,
                                        env=envsetup.clean_environment()).stdout.strip().splitlines()[-1])
        found = {k: v for k, v in res.items() if not v.startswith("FAILS")}
        missing = {k: v for k, v in res.items() if v.startswith("FAILS")}
        return dt, envsetup.dir_size_mb(tmp), found, missing
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/usr/bin/python3", help="the Python QGIS runs (Debian's)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print(f"Python {args.python}; lock {envsetup.LOCK_FILE.relative_to(ROOT)}; core part: "
          f"{', '.join(envsetup.PARTS['core'][0])}")
    rows = []
    for label, fn in (("own environment, pip cache warm", lambda: own_env(args.python, True)),
                      ("own environment, no pip cache", lambda: own_env(args.python, False)),
                      ("former installer (pip --target beside Debian's packages)", lambda: former_installer(args.python))):
        times = []
        for _ in range(args.repeat):
            dt, size, found, missing = fn()
            times.append(dt)
        times.sort()
        rows.append((label, times[len(times) // 2], size, found, missing))
    pins = dict(ln.split("==") for ln in envsetup.LOCK_FILE.read_text().splitlines() if "==" in ln)
    pins = {k.lower(): v for k, v in pins.items()}
    print(f"\n{'install':58} {'time (s)':>9} {'size (MB)':>10}  imports (versions that load, where not the pinned one)")
    for label, dt, size, found, missing in rows:
        ok = f"{len(found)}/{len(found) + len(missing)} import"
        bad = "; ".join(f"{k}: {v}" for k, v in missing.items())
        other = ", ".join(f"{k} {v} (pinned {pins.get(k)})" for k, v in found.items()
                          if pins.get(k) and v.split("+")[0] != pins[k])
        print(f"{label:58} {dt:9.1f} {size:10.0f}  {ok}" + (f" ({bad})" if bad else "") + (f"; {other}" if other else ""))
    print("(no pip cache: wheels fetched again from the configured indexes; on this machine those are local "
          "mirrors, so the time is not a download time)")


if __name__ == "__main__":
    main()
