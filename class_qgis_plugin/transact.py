"""Outputs that change together or not at all: stage files, then move them into place as one step.

A stage that writes several files (co-add: hundreds of PHA files and a layer; populate: a GIB
region raster, its sidecar, the ledger and a layer) writes them into private staging folders
beside their destinations (one per destination folder, so every move is a rename on one file
system), then :meth:`Transaction.commit` writes a journal (the list of moves,
made durable first), moves every file into place with ``os.replace`` and removes the journal. A
cancel or a failure before the journal exists leaves the destinations exactly as they were (the
staging folder is removed); a kill after it is rolled forward by :func:`recover`, which every stage
calls on its output folder first, so the destinations end exactly as after a complete run.
Staging folders of processes that no longer run are removed by :func:`recover` too.

Names: ``<folder>/.classxrf-txn-<pid>-<token>/`` (staging, in each destination folder) and
``<root>/.classxrf-txn-<pid>-<token>.json`` (the journal, in the transaction's root folder).
"""
import json
import os
import shutil
import uuid
from pathlib import Path

from .errors import ClassXRFError

PREFIX = ".classxrf-txn-"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def recover(root):
    """Finish or discard the transactions left in ``root`` by processes that are gone: a journal is
    rolled forward (its remaining moves done), a staging folder without a journal is removed.
    Returns the number of transactions rolled forward."""
    root = Path(root)
    if not root.is_dir():
        return 0
    done = 0
    for journal in sorted(root.glob(PREFIX + "*.json")):
        token = journal.stem[len(PREFIX):]
        if _pid_alive(_pid_of(token)) and _pid_of(token) != os.getpid():
            continue
        try:
            rec = json.loads(journal.read_text())
            moves, removals = rec["moves"], rec["removals"]
        except (OSError, ValueError, KeyError, TypeError):
            moves = None
        if moves is None:           # a journal that was never completed: the commit had not begun
            journal.unlink(missing_ok=True)
        else:
            _apply(moves, removals)
            journal.unlink(missing_ok=True)
            done += 1
        for folder in {str(Path(d).parent) for _, d in (moves or [])} | {str(root)}:
            shutil.rmtree(Path(folder) / (PREFIX + token), ignore_errors=True)
    for item in root.glob(PREFIX + "*"):
        token = item.name[len(PREFIX):].split(".")[0]
        if _pid_alive(_pid_of(token)):
            continue
        if item.is_dir() and not (root / (item.name + ".json")).exists():
            shutil.rmtree(item, ignore_errors=True)       # staged, never committed
        elif item.name.endswith(".json.tmp"):
            item.unlink(missing_ok=True)                  # a journal being written: no move was made
    return done


def _apply(moves, removals):
    """The moves (those not done yet) and removals of a journal; done again, they change nothing."""
    for src, dst in moves:
        if os.path.exists(src):
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    for path in removals:
        if os.path.exists(path):
            os.unlink(path)


def _pid_of(token):
    try:
        return int(token.split("-")[0])
    except ValueError:
        return -1


class Transaction:
    """Stage files for destinations under ``root``; :meth:`commit` moves them all into place.

    Use as a context manager: committed when the block succeeds, discarded when it raises
    (including a cancel). ``path(final)`` gives the staging path to write for ``final``."""

    def __init__(self, root):
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.moves = []
        self.removals = []
        self.trees = []
        self.stagings = []
        self.committed = False

    def path(self, final):
        """The staging path for the destination ``final`` (its name kept, so writers that choose a
        format by extension work), in a staging folder beside it; the same final path twice gives
        the same staging path."""
        final = Path(final).absolute()
        for src, dst in self.moves:
            if dst == final:
                return src
        staging = final.parent / (PREFIX + self.token)
        if staging not in self.stagings:
            staging.mkdir(parents=True)
            self.stagings.append(staging)
        src = staging / f"{len(self.moves):05d}" / final.name
        src.parent.mkdir()
        self.moves.append((src, final))
        return src

    def tree(self, final_folder):
        """A staging folder whose whole content, at commit, moves to the same relative paths under
        ``final_folder`` (for a stage that writes a folder tree, e.g. the simulated data set)."""
        final_folder = Path(final_folder).absolute()
        staging = final_folder / (PREFIX + self.token) / f"tree{len(self.trees)}"
        staging.mkdir(parents=True)
        if staging.parent not in self.stagings:
            self.stagings.append(staging.parent)
        self.trees.append((staging, final_folder))
        return staging

    def remove(self, final):
        """Remove ``final`` (if it exists) as part of the commit."""
        self.removals.append(str(Path(final).absolute()))

    def commit(self):
        for _, dst in self.moves:      # checked before anything moves: a commit does not fail half-way
            if dst.is_dir():
                raise ClassXRFError(dst, "cannot be written: a folder of that name is in the way")
            if not os.access(dst.parent, os.W_OK | os.X_OK):
                raise ClassXRFError(dst.parent, "the folder cannot be written (read-only or no permission)")
        moves = [(str(s), str(d)) for s, d in self.moves if s.exists()]
        for staging, final_folder in self.trees:
            for src in sorted(staging.rglob("*")):
                if src.is_file():
                    moves.append((str(src), str(final_folder / src.relative_to(staging))))
        # companions written beside a staged file (a Shapefile's .dbf, .shx, .prj ...) move too
        for src, dst in list(self.moves):
            for comp in src.parent.iterdir():
                if comp != src and comp.stem == src.stem:
                    moves.append((str(comp), str(dst.with_suffix(comp.suffix))))
        journal = self.root / (PREFIX + self.token + ".json")
        tmp = journal.with_suffix(".json.tmp")
        with open(tmp, "w") as fh:
            json.dump({"moves": moves, "removals": self.removals}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, journal)
        _fsync_dir(self.root)
        _apply(moves, self.removals)
        _fsync_dir(self.root)
        journal.unlink()
        for staging in self.stagings:
            shutil.rmtree(staging, ignore_errors=True)
        self.committed = True

    def abort(self):
        for staging in self.stagings:
            shutil.rmtree(staging, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def output_folder(folder):
    """``folder`` made if needed; a path that is a file, or a folder that cannot be written, is a
    clear error (not a traceback)."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ClassXRFError(folder, "the output folder is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ClassXRFError(folder, f"cannot create the output folder ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ClassXRFError(folder, "the output folder cannot be written (read-only or no permission)")
    return folder


def open_transaction(root):
    """A :class:`Transaction` under ``root``; a folder that cannot be written is a clear error."""
    try:
        return Transaction(root)
    except OSError as exc:
        raise ClassXRFError(root, f"cannot write into the output folder ({exc.strerror or exc})") from None
