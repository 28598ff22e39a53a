"""Co-add throughput (8-s L1 files per second): class_qgis_plugin.coadd against a
straightforward file-by-file astropy loop, in the same run on the same files.

The 20 real 8-s files of ../shared/data/class/raw8s/20240123 are copied N times into a temporary
folder; copy k has its STARTIME/ENDTIME/MID_UTC moved k days later (the header bytes are patched
in place, same width), so every copy is a distinct, realistic set of frames with the same gaps.
Both methods read every file, find contiguous runs, make sliding 12-frame windows (stride 1) and
write one OGIP PHA per window. Prints the median of the repeats and the ratio.

    .venv/bin/python benchmarks/bench_coadd.py [--copies 100] [--repeats 3]
"""
import argparse
import glob
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timedelta

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from class_qgis_plugin.coadd import coadd_folder  # noqa: E402

DATA = os.environ.get("CLASSXRF_SHARED_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))


def make_copies(dst, copies):
    src = sorted(glob.glob(os.path.join(DATA, "class", "raw8s", "20240123", "*.fits")))
    if not src:
        sys.exit(f"no input files under {DATA}/class/raw8s/20240123")
    blobs = [open(p, "rb").read() for p in src]
    for k in range(copies):
        for i, b in enumerate(blobs):
            out = bytearray(b)
            for key in (b"STARTIME= '", b"ENDTIME = '", b"MID_UTC = '"):
                j = out.find(key) + len(key)
                t = datetime.strptime(out[j:j + 23].decode(), "%Y-%m-%dT%H:%M:%S.%f")
                t += timedelta(days=k)
                out[j:j + 23] = (t.strftime("%Y-%m-%dT%H:%M:%S.") +
                                 f"{t.microsecond // 1000:03d}").encode()
            with open(os.path.join(dst, f"c{k:04d}_{i:02d}.fits"), "wb") as fh:
                fh.write(out)
    return copies * len(blobs)


def astropy_loop(folder, out_dir, window=12, stride=1, tol=0.5):
    """The straightforward way: astropy per file, numpy sums, astropy writes."""
    from astropy.io import fits
    frames = []
    for p in sorted(glob.glob(os.path.join(folder, "*.fits"))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(p) as h:
                hd = h[1].header
                frames.append((datetime.fromisoformat(hd["STARTIME"]),
                               datetime.fromisoformat(hd["ENDTIME"]),
                               np.array(h[1].data["COUNTS"], float), hd.copy()))
    frames.sort(key=lambda f: f[0])
    runs = []
    for k, f in enumerate(frames):
        if runs and abs((f[0] - frames[runs[-1][-1]][1]).total_seconds()) <= tol:
            runs[-1].append(k)
        else:
            runs.append([k])
    n = 0
    for run in runs:
        for s in range(0, len(run) - window + 1, stride):
            idx = run[s:s + window]
            counts = np.sum([frames[i][2] for i in idx], axis=0)
            hdr = frames[idx[0]][3].copy()
            hdr["EXPOSURE"] = 8.0 * len(idx)
            hdr["ENDTIME"] = frames[idx[-1]][3]["ENDTIME"]
            for key in ("SAT_ALT", "SOLARANG", "PHASEANG", "EMISNANG"):
                hdr[key] = float(np.mean([frames[i][3][key] for i in idx]))
            cols = [fits.Column(name="CHANNEL", format="I", array=np.arange(counts.size)),
                    fits.Column(name="COUNTS", format="E", array=counts)]
            hdu = fits.BinTableHDU.from_columns(cols, header=hdr)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(
                    os.path.join(out_dir, f"w{n:06d}.fits"), overwrite=True)
            n += 1
    return n


def limits(inp, tmp, n_files, repeats):
    """Where the co-add's time goes, files/s of each step alone (median of the repeats): the bytes read
    (the files are in the page cache: this is not the disk), each file parsed (read_class_l1), the
    co-add with windows that do not overlap (stride 12: one spectrum per 12 files, the archive's
    case), and with stride 1 (a spectrum per file)."""
    from class_qgis_plugin.class_l1 import read_class_l1
    files = sorted(glob.glob(os.path.join(inp, "*.fits")))
    steps = {}

    def read_bytes():
        for p in files:
            with open(p, "rb") as fh:
                fh.read()

    def parse():
        for p in files:
            read_class_l1(p)

    def coadd(stride):
        out = os.path.join(tmp, f"lim{stride}")
        os.makedirs(out)
        coadd_folder(inp, out, strategy="sliding", window=12, stride=stride)
        shutil.rmtree(out)

    for name, fn in (("read the bytes", read_bytes), ("parse each file (read_class_l1)", parse),
                     ("co-add, stride 12 (a spectrum per 12 files)", lambda: coadd(12)),
                     ("co-add, stride 1 (a spectrum per file)", lambda: coadd(1))):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        steps[name] = n_files / statistics.median(ts)
    print("what limits it (files/s of each step alone, page cache):")
    for name, rate in steps.items():
        print(f"  {name:45s} {rate:9.0f} files/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_coadd_")
    try:
        inp = os.path.join(tmp, "in")
        os.makedirs(inp)
        n_files = make_copies(inp, args.copies)
        t_ours, t_base, n_ours, n_base = [], [], None, None
        for r in range(args.repeats):
            for name in ("ours", "base"):
                out = os.path.join(tmp, f"{name}{r}")
                os.makedirs(out)
                t0 = time.perf_counter()
                if name == "ours":
                    res = coadd_folder(inp, out, strategy="sliding", window=12, stride=1)
                    n_ours = len(res.pha_paths)
                    t_ours.append(time.perf_counter() - t0)
                else:
                    n_base = astropy_loop(inp, out)
                    t_base.append(time.perf_counter() - t0)
                shutil.rmtree(out)
        assert n_ours == n_base, (n_ours, n_base)
        mo, mb = statistics.median(t_ours), statistics.median(t_base)
        print(f"input: {n_files} 8-s files ({args.copies} copies of 20240123), "
              f"{n_ours} co-added spectra (window 12, stride 1), {args.repeats} repeats")
        print(f"class_qgis_plugin.coadd : median {mo:.3f} s  -> {n_files / mo:8.0f} files/s")
        print(f"astropy file-by-file    : median {mb:.3f} s  -> {n_files / mb:8.0f} files/s")
        print(f"speed-up (median ratio) : {mb / mo:.1f}x")
        limits(inp, tmp, n_files, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
