"""The worker process (class_qgis_plugin/worker.py): SIGTERM (what the Cancel button sends) stops a
task at once (at most the step under way finishes), reports "Cancelled", and leaves no output; an
error is one line."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data

ROOT = Path(__file__).resolve().parents[2]


def _start(task, params):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "class_qgis_plugin.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    proc.stdin.write(json.dumps({"task": task, "params": params}))
    proc.stdin.close()
    return proc


@pytest.mark.realdata
def test_sigterm_while_writing_plots_stops_within_a_second_and_leaves_nothing(tmp_path):
    from shapely.geometry import box
    from class_qgis_plugin import geo
    d = shared_data("class", "x2abund_test")
    src = str(d / "ch2_cla_l1_20210827T210316000_20210827T210332000_1024.fits")
    n = 40
    layer = tmp_path / "obs.gpkg"
    geo.write_vector(layer, [box(k * 0.1, 0, k * 0.1 + 0.1, 1) for k in range(n)],
                     dict(obs_id=np.arange(1, n + 1), pha_path=[src] * n, solar_ang=np.full(n, 64.55),
                          emis_ang=np.zeros(n), exposure=np.full(n, 16.0)))
    out = tmp_path / "out"
    out.mkdir()
    proc = _start("invert", dict(layer=str(layer), out_layer=str(out / "abund.gpkg"), rmf=str(d / "class_rmf_v1.rmf"),
                                 arf=str(d / "class_arf_v1.arf"),
                                 background=str(d / "ch2_cla_l1_20210826T220355000_20210826T223335000_1024.fits"),
                                 solar=str(d / "modelop_20210827T210316000_20210827T210332000.txt"),
                                 gain_slope=1.0043, gain_offset=0.0316, plot_dir=str(out / "plots")))
    for line in proc.stdout:                         # wait until it is writing plots
        msg = json.loads(line)
        if "fit plot 3/" in str(msg.get("message")):
            break
    proc.send_signal(signal.SIGTERM)
    rest = [json.loads(line) for line in proc.stdout.read().strip().splitlines()]
    proc.wait(timeout=30)
    # it stops at once: at most the plot being drawn is finished (not the other 36), then "Cancelled"
    assert sum("fit plot" in str(m.get("message")) for m in rest) <= 1, rest
    assert rest[-1].get("type") == "Cancelled"
    assert sorted(p.name for p in out.rglob("*")) in ([], ["plots"])


def test_a_bad_input_is_one_line_naming_the_file(tmp_path):
    proc = _start("coadd", dict(inputs=str(tmp_path / "nothing_here"), out_folder=str(tmp_path / "o"),
                                out_layer=str(tmp_path / "o.gpkg")))
    out = proc.stdout.read()
    proc.wait(timeout=60)
    last = json.loads(out.strip().splitlines()[-1])
    assert last["type"] == "ClassXRFError" and "nothing_here" in last["error"] and "\n" not in last["error"]
