"""Every algorithm's help, where QGIS 3.22 shows it:

* the dialog's help panel: QGIS's own ``QgsProcessingAlgorithmDialogBase::setAlgorithm`` renders
  ``shortHelpString()`` with one ``<p>`` per source line, so every paragraph, heading and list item of
  the help must come out whole (a hard-wrapped HELP broke them mid-sentence); the dialog shows a Help
  button (``helpUrl()``). Widgets need a GUI application, so this part runs in a subprocess;
* ``qgis_process help``: plain text, no HTML tags; ``--json help`` gives the help page's URL;
* the help page ``<name>.html`` ``helpUrl()`` names: written from the help text into the profile's
  cache when asked for, so it holds every paragraph of the help (no copy in the repository to go stale).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QUrl

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "class_qgis"
QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
TAG = re.compile(r"</?(p|b|i|ul|ol|li|h[1-6]|br|table|tr|td|code|pre)\b[^>]*>", re.IGNORECASE)

DIALOG_SCRIPT = r"""
import json, os, sys, tempfile, importlib
from pathlib import Path
sys.path.insert(0, "/usr/share/qgis/python/plugins")
from qgis.core import QgsApplication
app = QgsApplication([], True)
app.initQgis()
plugins = Path(tempfile.mkdtemp())
os.symlink(sys.argv[1], plugins / "class_qgis")
sys.path.insert(0, str(plugins))
from processing.core.Processing import Processing
Processing.initialize()
plugin = importlib.import_module("class_qgis").classFactory(None)
plugin.initProcessing()
from qgis.gui import QgsProcessingAlgorithmDialogBase
from qgis.PyQt.QtWidgets import QDialogButtonBox, QTextBrowser


class Dialog(QgsProcessingAlgorithmDialogBase):
    def getParameterValues(self):
        return {}

    def runAlgorithm(self):
        pass


out = {}
reg = QgsApplication.processingRegistry()
for alg in reg.providerById("classxrf").algorithms():
    dlg = Dialog()
    dlg.setAlgorithm(reg.createAlgorithmById(alg.id()))  # what the Toolbox does: QGIS formats the help
    panel = dlg.findChild(QTextBrowser, "textShortHelp")
    out[alg.id()] = dict(text=panel.toPlainText(), help_url=alg.helpUrl(),
                         help_button=dlg.buttonBox().button(QDialogButtonBox.Help) is not None)
    dlg.deleteLater()
print("RESULT" + json.dumps(out))
plugin.unload()
"""


def _norm(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def dialogs(plugin):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", DIALOG_SCRIPT, str(ROOT)], capture_output=True, text=True,
                          env=env, timeout=180)
    assert "RESULT" in proc.stdout, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1].splitlines()[0])


def test_dialog_help_panel_keeps_every_paragraph_whole(plugin, dialogs):
    from class_qgis.processing_provider.helptext import text_blocks
    from class_qgis.processing_provider.provider import algorithm_classes

    classes = {f"classxrf:{c.ALG_NAME}": c for c in algorithm_classes()}
    assert set(classes) <= set(dialogs)
    for alg_id, cls in classes.items():
        lines = {_norm(line) for line in dialogs[alg_id]["text"].splitlines()}
        blocks = [t for kind, t in text_blocks(cls.HELP) if kind in ("p", "h", "li")]
        assert len(blocks) >= 3, alg_id
        broken = [b for b in blocks if _norm(b) not in lines]
        assert not broken, f"{alg_id}: paragraphs broken in the dialog: {broken[:2]}"
        assert f"{cls.STEP} {cls.DISPLAY}".strip() in lines  # the panel's title is the display name


def test_every_algorithm_and_model_has_a_help_button_to_its_page(plugin, dialogs):
    reg = QgsApplication.processingRegistry()
    ids = {a.id() for a in reg.providerById("classxrf").algorithms()}
    assert "classxrf:classxrf_chain" in ids
    for alg_id in ids:
        d = dialogs[alg_id]
        assert d["help_button"], alg_id
        url = QUrl(d["help_url"])
        assert url.isLocalFile(), (alg_id, d["help_url"])
        page = Path(url.toLocalFile())
        assert page.is_file() and page.stem == alg_id.split(":", 1)[1], page
        assert alg_id in page.read_text(encoding="utf-8")


def test_help_pages_hold_the_help_text_and_follow_it(plugin, tmp_path):
    """The page of every algorithm holds each paragraph of its HELP; changed help gives a changed
    page at the next helpUrl() (written anew), an unchanged one is not rewritten."""
    from class_qgis.processing_provider import helptext
    from class_qgis.processing_provider.provider import algorithm_classes
    for cls in algorithm_classes():
        url = helptext.help_url(cls.ALG_NAME, helptext.algorithm_page(cls), folder=str(tmp_path))
        page = {_norm(b) for _, b in helptext.text_blocks(Path(QUrl(url).toLocalFile()).read_text(encoding="utf-8"))}
        for kind, block in helptext.text_blocks(cls.HELP):
            assert _norm(block) in page, (cls.ALG_NAME, block[:60])
    page = tmp_path / "x.html"
    helptext.help_url("x", "<p>one</p>", folder=str(tmp_path))
    mtime = page.stat().st_mtime_ns
    helptext.help_url("x", "<p>one</p>", folder=str(tmp_path))
    assert page.stat().st_mtime_ns == mtime
    helptext.help_url("x", "<p>two</p>", folder=str(tmp_path))
    assert page.read_text() == "<p>two</p>"


def test_help_text_conversions():
    from class_qgis.processing_provider.helptext import dialog_html, for_application, plain_text

    src = "<p>one\ntwo</p>\n<pre>a\n  b</pre>\n<ul>\n<li>x\ny</li>\n</ul>"
    assert dialog_html(src) == "<p>one two</p> <pre>a<br>  b</pre> <ul> <li>x y</li> </ul>"
    assert "\n" not in dialog_html(src)
    text = plain_text("<h3>Outputs</h3><p>A &gt; B &amp; <b>bold</b></p><ul><li>first</li><li>second</li></ul>")
    assert text == "Outputs\n-------\n\nA > B & bold\n\n  - first\n  - second"
    assert for_application(src, platform="qgis_process") == plain_text(src)
    assert for_application(src, platform="desktop") == dialog_html(src)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """A QGIS profile with the checkout as its plugin ``class_qgis`` (a link), enabled for qgis_process."""
    if not Path(QGIS_PROCESS).exists():
        pytest.skip("qgis_process.bin is not installed")
    base = tmp_path_factory.mktemp("qgis_profile_help")
    plugins = base / "config" / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    os.symlink(ROOT, plugins / PACKAGE)
    (base / "home").mkdir()
    env = dict(os.environ, HOME=str(base / "home"), QGIS_CUSTOM_CONFIG_PATH=str(base / "config"),
               QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([QGIS_PROCESS, "plugins", "enable", PACKAGE], env=env, cwd=base, capture_output=True,
                         text=True, timeout=120)
    assert "Enabling plugin" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    return dict(env=env, base=base)


def _qgis_process(profile, *args):
    proc = subprocess.run([QGIS_PROCESS, *args], env=profile["env"], cwd=profile["base"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("name", ["invert", "dependencies", "basemap"])
def test_qgis_process_help_is_plain_text(plugin, profile, name):
    from class_qgis.processing_provider.helptext import text_blocks
    from class_qgis.processing_provider.provider import algorithm_classes

    cls = next(c for c in algorithm_classes() if c.ALG_NAME == name)
    out = _qgis_process(profile, "help", f"classxrf:{name}")
    description = out.split("Description\n----------------\n", 1)[1].split("\n----------------\nArguments", 1)[0]
    assert not TAG.search(description), TAG.search(description).group(0)
    assert "&gt;" not in description and "&amp;" not in description
    assert max(len(line) for line in description.splitlines()) <= 100
    flowing = _norm(description)
    for kind, text in text_blocks(cls.HELP):
        assert _norm(text) in flowing, (kind, text[:80])


def test_qgis_process_json_help_names_the_help_page(plugin, profile):
    out = _qgis_process(profile, "--json", "help", "classxrf:populate")
    details = json.loads(out[out.index("{"):])["algorithm_details"]
    page = Path(QUrl(details["help_url"]).toLocalFile())
    assert page.name == "populate.html" and page.is_file()
    assert details["name"] == "4.1 Track population (GIB)"


def test_qgis_process_help_of_the_model_is_plain_text(plugin, profile):
    out = _qgis_process(profile, "help", "classxrf:classxrf_chain")
    description = out.split("Description\n----------------\n", 1)[1].split("\n----------------\nArguments", 1)[0]
    assert not TAG.search(description) and "<html>" not in description
    assert "The whole CLASS XRF chain on the simulated data set" in _norm(description)
