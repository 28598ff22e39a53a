"""A user's first session with a plain Debian QGIS: the zip, a fresh profile, the plugin's own
installer, then the chain (scripts/plain_qgis_check.py runs inside QGIS desktop under Xvfb).

Debian's QGIS and Python, no virtual environment on the path: the plugin's glue runs in QGIS's own
Python, its science in the environment the installer makes under the profile. Prints the install
time and size; checks that the event loop ran at least every second during the install (QGIS
stayed responsive), that the environment is under 600 MB (the issue's goal for the core part), that
the chain's layer holds trusted abundances, and that with the basemap and an abundance layer loaded
the message bar holds no warning or error."""
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QGIS = shutil.which("qgis")
XVFB = shutil.which("xvfb-run")


@pytest.mark.skipif(not (QGIS and XVFB), reason="needs QGIS desktop (qgis) and xvfb-run")
def test_zip_fresh_profile_installer_then_chain(tmp_path):
    from test_qgis_process import PACKAGE, make_plugin_zip
    zpath = tmp_path / f"{PACKAGE}.zip"
    make_plugin_zip(zpath)
    plugins = tmp_path / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zpath) as z:                      # what "Install from ZIP" does
        z.extractall(plugins)
    out = tmp_path / "check.json"
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "QT_QPA_PLATFORM", "CLASSXRF_SHARED_DATA")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env.update(CLASSXRF_CHECK_OUT=str(out), CLASSXRF_PLUGIN=PACKAGE, OMP_NUM_THREADS="2")
    cmd = [XVFB, "-a", "-s", "-screen 0 1280x1024x24", QGIS, "--profiles-path", str(tmp_path), "--profile",
           "default", "--nologo", "--noversioncheck", "--code", str(ROOT / "scripts" / "plain_qgis_check.py")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert out.exists(), f"QGIS ended ({proc.returncode}) without a result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    res = json.loads(out.read_text())
    inst = res.get("install", {})
    r = inst.get("results", {})
    print(f"\nplain QGIS: Python {res['prefix']} {res['python_version']}; install of the core environment "
          f"{inst.get('seconds', float('nan')):.0f} s (task), {r.get('SIZE_MB', float('nan')):.0f} MB; event loop "
          f"ran every {inst.get('max_gap_s') or float('nan'):.2f} s at worst ({inst.get('n_ticks')} ticks); "
          f"chain {json.dumps(res.get('chain', {}).get('seconds', {}))}")
    assert "error" not in res, res.get("error")
    assert "classxrf:dependencies" in res["algorithms"] and "classxrf:invert" in res["algorithms"]
    assert res["prefix"] == res["base_prefix"] and ".venv" not in res["prefix"]        # QGIS's own Python, no venv
    assert inst["ok"] and r["PARTS"] == "core" and not r["MISSING"], inst
    assert inst["max_gap_s"] is not None and inst["max_gap_s"] <= 1.0, inst
    assert 0 < r["SIZE_MB"] < 600
    env_dir = tmp_path / "profiles" / "default" / "python" / "classxrf-env"
    assert res["science_python"] == [str(env_dir / "bin" / "python"), "own"]
    assert res["project_crs"] == "ESRI:104903" and res["n_layers"] >= 2
    assert not [m for m in res["message_bar"] if m[0] in (1, 2)], res["message_bar"]   # no warning, no error
    chain = res["chain"]
    assert chain["layer_valid"] and chain["n_features"] == chain["n_spectra"] > 0 and chain["fit_flags"] == [0]
    assert all(4 < a < 25 for a in chain["al"]) and chain["n_sub"] > 0
