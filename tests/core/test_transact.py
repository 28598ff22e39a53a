"""Outputs that change together or not at all (class_qgis_plugin/transact.py), checked with real
kills: a child process stages files and is killed with SIGKILL at each point of its commit."""
import subprocess
import sys
from pathlib import Path

import pytest

from class_qgis_plugin.transact import PREFIX, Transaction, recover

ROOT = Path(__file__).resolve().parents[2]


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_commit_moves_everything_and_a_failure_changes_nothing(tmp_path):
    out, other = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    before = _tree(out)
    with pytest.raises(RuntimeError):
        with Transaction(out) as tx:
            tx.path(out / "a.txt").write_text("new a")
            tx.path(out / "b.txt").write_text("new b")
            raise RuntimeError("a failure while writing")
    assert _tree(out) == before and not other.exists()
    with Transaction(out) as tx:
        tx.path(out / "a.txt").write_text("new a")
        tx.path(out / "sub" / "b.txt").write_text("new b")
        tx.path(other / "layer.shp").write_text("shp")
        (tx.path(other / "layer.shp").with_suffix(".dbf")).write_text("dbf")   # a companion file
    assert _tree(out) == {"a.txt": b"new a", "sub/b.txt": b"new b"}
    assert _tree(other) == {"layer.dbf": b"dbf", "layer.shp": b"shp"}


KILLER = r"""
import os, signal, sys
sys.path.insert(0, {root!r})
from class_qgis_plugin import transact
kill_at = int(sys.argv[1])
real = os.replace
count = [0]
def replace(a, b):
    if count[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    count[0] += 1
    real(a, b)
transact.os.replace = replace
out = sys.argv[2]
tx = transact.Transaction(out)
for k in range(4):
    with open(tx.path(os.path.join(out, f"f{{k}}.txt")), "w") as fh:
        fh.write(f"new {{k}}")
if kill_at == -1:
    os.kill(os.getpid(), signal.SIGKILL)       # killed while staging, before the commit
tx.commit()
"""


@pytest.mark.parametrize("kill_at", [-1, 0, 1, 2, 3, 4, 5])
def test_a_kill_at_any_point_leaves_the_old_or_rolls_forward_to_the_new(tmp_path, kill_at):
    """kill -9 while staging (-1), when writing the journal (0: its os.replace), after it and after
    each move (1..4), and after the last (5: never reached, the commit completes): the folder holds
    exactly the old files, or after recover() exactly the new ones; no staging folder is left."""
    out = tmp_path / "out"
    out.mkdir()
    for k in range(3):
        (out / f"f{k}.txt").write_text(f"old {k}")
    old = _tree(out)
    new = {f"f{k}.txt": f"new {k}".encode() for k in range(4)}
    proc = subprocess.run([sys.executable, "-c", KILLER.format(root=str(ROOT)), str(kill_at), str(out)])
    if kill_at == 5:
        assert proc.returncode == 0
    else:
        assert proc.returncode == -9
    rolled = recover(out)
    after = _tree(out)
    assert after == (old if kill_at <= 0 else new), (kill_at, after)
    assert rolled == (1 if 0 < kill_at < 5 else 0)
    assert not any(p.name.startswith(PREFIX) for p in out.iterdir())


def test_recover_keeps_the_staging_of_a_running_process(tmp_path):
    tx = Transaction(tmp_path)
    tx.path(tmp_path / "x.txt").write_text("x")
    recover(tmp_path)                      # our own process is alive: its staging stays
    assert (tmp_path / (PREFIX + tx.token)).is_dir()
    tx.abort()
    assert not any(p.name.startswith(PREFIX) for p in tmp_path.iterdir())


def test_a_staged_tree_moves_whole(tmp_path):
    out = tmp_path / "sim"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier file")
    with Transaction(out) as tx:
        st = tx.tree(out)
        (st / "frames").mkdir()
        (st / "frames" / "f1.fits").write_text("1")
        (st / "albedo.tif").write_text("a")
    assert _tree(out) == {"albedo.tif": b"a", "frames/f1.fits": b"1", "keep.txt": b"an earlier file"}
    with pytest.raises(KeyError):
        with Transaction(out) as tx:
            (tx.tree(out) / "albedo.tif").write_text("b")
            raise KeyError("cancel")
    assert _tree(out)["albedo.tif"] == b"a"
