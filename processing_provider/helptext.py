"""The algorithms' help text in the three places QGIS shows it, from one HTML source (each
algorithm's ``HELP``):

* the Processing dialog's help panel: QGIS 3.22 (``QgsProcessingAlgorithmDialogBase::formatHelp``)
  splits ``shortHelpString()`` at every ``\\n`` and wraps each piece in ``<p>...</p>``, so hard-wrapped
  HTML comes out as one paragraph per source line. :func:`dialog_html` joins the lines, so that only
  the HTML tags structure the text (line breaks inside ``<pre>`` become ``<br>``);
* ``qgis_process help`` prints ``shortHelpString()`` as it is, on a terminal: :func:`plain_text`
  renders the HTML as wrapped plain text (paragraphs, headings, bulleted lists);
* the dialog's Help button opens ``helpUrl()``: the plugin's own page ``<algorithm name>.html``,
  written from ``HELP`` (:func:`help_page`) into the profile's cache folder when QGIS asks for it, so
  the page never differs from the help text (no copy is kept in the repository).

Pure Python (``html.parser``, ``textwrap``); only :func:`for_application` and :func:`help_url` import
QGIS, when called.
"""
import functools
import html
import os
import re
import textwrap
from html.parser import HTMLParser

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PRE = re.compile(r"(<pre\b.*?</pre>)", re.IGNORECASE | re.DOTALL)


def help_dir():
    """Where the help pages are written: ``<profile>/cache/classxrf_help``."""
    from qgis.core import QgsApplication

    return os.path.join(QgsApplication.qgisSettingsDirPath(), "cache", "classxrf_help")


def for_application(text, platform=None):
    """The help as the running application shows it: plain text in ``qgis_process`` (QGIS 3.22 names
    its platform ``qgis_process``: ``QgsApplication.platform()``), one-line HTML everywhere else (the
    desktop's dialogs, PyQGIS scripts, ``processing.algorithmHelp``)."""
    if platform is None:
        from qgis.core import QgsApplication

        platform = QgsApplication.platform()
    return _render(text, platform == "qgis_process")


@functools.lru_cache(maxsize=64)
def _render(text, plain):
    return plain_text(text) if plain else dialog_html(text)


def help_url(name, page, folder=None):
    """``file://`` URL of the help page ``<name>.html`` (what ``helpUrl()`` returns: the dialog's Help
    button opens it), written from ``page`` (its HTML) into ``folder`` (default :func:`help_dir`)
    when missing or different; empty when it cannot be written, so that QGIS hides the button."""
    folder = folder or help_dir()
    path = os.path.join(folder, f"{name}.html")
    try:
        with open(path, encoding="utf-8") as fh:
            current = fh.read() == page
    except OSError:
        current = False
    if not current:
        try:
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(page)
            os.replace(tmp, path)
        except OSError:
            return ""
    from qgis.PyQt.QtCore import QUrl

    return QUrl.fromLocalFile(path).toString()


def dialog_html(text):
    """``text`` (HTML) on one line: every run of white space that holds a line break becomes one
    space, so QGIS's one-paragraph-per-line rendering leaves the text as written. Inside ``<pre>``
    the line breaks are kept as ``<br>``."""
    parts = _PRE.split(text.strip())
    out = []
    for k, part in enumerate(parts):
        if k % 2:  # a <pre> block
            out.append(part.replace("\r\n", "\n").replace("\n", "<br>"))
        else:
            out.append(re.sub(r"\s*\n\s*", " ", part))
    return "".join(out)


class _TextRenderer(HTMLParser):
    """HTML to plain text: blocks (p, h1-h6, li, tr, pre, br) become lines, inline tags vanish."""

    BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "pre", "table", "ul", "ol", "dl",
              "dt", "dd", "blockquote"}

    def __init__(self, width):
        super().__init__(convert_charrefs=True)
        self.width = width
        self.blocks = []  # (kind, text)
        self.kind = None
        self.buf = []
        self.pre = 0
        self.cells = None

    def _flush(self):
        text = "".join(self.buf)
        self.buf = []
        if self.pre:
            if text.strip("\n"):
                self.blocks.append(("pre", text.strip("\n")))
            return
        text = " ".join(text.split())
        if text:
            self.blocks.append((self.kind or "p", text))

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            if self.pre:
                self.buf.append("\n")
            else:
                self._flush()
            return
        if tag == "td" or tag == "th":
            if self.cells is not None:
                self.cells.append("")
            return
        if tag in self.BLOCKS:
            self._flush()
            if tag == "pre":
                self.pre += 1
            elif tag == "tr":
                self.cells = []
            elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                self.kind = "h"
            elif tag in ("li", "dd"):
                self.kind = "li"
            else:
                self.kind = "p"

    def handle_endtag(self, tag):
        if tag == "tr" and self.cells is not None:
            row = [" ".join(c.split()) for c in self.cells]
            self.cells = None
            if any(row):
                self.blocks.append(("tr", ": ".join(c for c in row if c)))
            self.kind = None
            return
        if tag in self.BLOCKS:
            self._flush()
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self.kind = None

    def handle_data(self, data):
        if self.cells is not None:
            if not self.cells:
                self.cells.append("")
            self.cells[-1] += data
        else:
            self.buf.append(data)

    def render(self):
        self._flush()
        lines, prev = [], None
        for kind, text in self.blocks:
            if kind in ("li", "tr") and prev not in ("li", "tr"):
                lines.append("")
            prev = kind
            if kind == "h":
                lines += ["", text, "-" * len(text)]
            elif kind in ("li", "tr"):
                lines += textwrap.wrap(text, self.width, initial_indent="  - ", subsequent_indent="    ",
                                       break_on_hyphens=False, break_long_words=False)
            elif kind == "pre":
                lines += ["", *("    " + line for line in text.split("\n")), ""]
            else:
                lines += ["", *textwrap.wrap(text, self.width, break_on_hyphens=False, break_long_words=False)]
        text = "\n".join(lines)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def text_blocks(text):
    """``[(kind, text)]`` of the HTML ``text``: its paragraphs (``p``), headings (``h``), list items
    (``li``), table rows (``tr``, cells joined by ``: ``) and ``<pre>`` blocks, white space collapsed."""
    parser = _TextRenderer(100)
    parser.feed(text)
    parser.close()
    parser._flush()
    return list(parser.blocks)


def plain_text(text, width=100):
    """``text`` (HTML) as plain text for a terminal: paragraphs wrapped at ``width`` and separated by
    blank lines, headings underlined, list items and table rows as ``- `` items."""
    parser = _TextRenderer(width)
    parser.feed(text)
    parser.close()
    return parser.render()


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - CLASS lunar XRF</title>
<style>
body {{ font-family: sans-serif; max-width: 52em; margin: 1.5em auto; padding: 0 1em; line-height: 1.45;
       color: #222; }}
h1 {{ font-size: 1.5em; }} h3 {{ margin-top: 1.4em; }} code, .id {{ font-family: monospace; }}
.id {{ color: #555; }} footer {{ margin-top: 2em; font-size: 0.85em; color: #666; }}
td {{ vertical-align: top; padding: 0.2em 0.6em 0.2em 0; }}
</style>
</head>
<body>
<!-- written by the plugin from the help text ({source}) when QGIS asks for it -->
<h1>{title}</h1>
<p class="id">{alg_id} &middot; {group}</p>
{body}
<footer>CLASS lunar XRF QGIS plugin (Processing provider <span class="id">classxrf</span>). The same text is in
the right-hand panel of the algorithm's dialog; <span class="id">qgis_process help {alg_id}</span> prints it as
plain text.</footer>
</body>
</html>
"""


def help_page(title, alg_id, group, body, source):
    """The HTML page of one algorithm: its title, id and group, then its help text ``body``."""
    return PAGE.format(title=html.escape(title), alg_id=html.escape(alg_id), group=html.escape(group),
                       body=body.strip(), source=html.escape(source, quote=False))


def _model_body(model):
    """The help of a shipped model: its description, its steps, inputs and outputs."""
    esc = html.escape
    desc = model.helpContent().get("ALG_DESC", "")
    parts = [f"<p>{esc(desc)}</p>"] if desc else []
    children = sorted(model.childAlgorithms().values(), key=lambda c: (c.position().y(), c.childId()))
    parts.append("<h3>Steps</h3>\n<ol>")
    parts += [f"<li>{esc(c.description() or c.childId())} (<code>{esc(c.algorithmId())}</code>)</li>"
              for c in children]
    parts.append("</ol>")
    inputs = [p for p in model.parameterDefinitions() if not p.isDestination()]
    if inputs:
        parts.append("<h3>Inputs</h3>\n<ul>")
        parts += [f"<li><b>{esc(p.description())}</b> (<code>{esc(p.name())}</code>)</li>" for p in inputs]
        parts.append("</ul>")
    outputs = [(f"{c.childId()}:{name}", out.description()) for c in children
               for name, out in sorted(c.modelOutputs().items())]
    if outputs:
        parts.append("<h3>Outputs</h3>\n<ul>")
        parts += [f"<li><b>{esc(d)}</b> (<code>{esc(n)}</code>)</li>" for n, d in outputs]
        parts.append("</ul>")
    parts.append("<p>Open the model in Processing &gt; Graphical Modeler to change its steps (e.g. real CLASS and "
                 "XSM folders instead of the simulated set); its file is <code>resources/"
                 f"{esc(os.path.basename(model.sourceFilePath()))}</code>, written by "
                 "<code>scripts/make_model.py</code>.</p>")
    return "\n".join(parts)


def _value(v):
    if isinstance(v, (tuple, list)):
        return ", ".join(str(x) for x in v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:g}" if isinstance(v, float) else str(v)


def spec_sections(spec, stage=None):
    """HTML sections generated from a stage spec (:mod:`class_qgis_plugin.specs`): its parameters
    (label, Processing key, default, choices, help) and, with ``stage``, the observation-layer columns
    the stage adds (:mod:`class_qgis_plugin.obslayer`), so the help never differs from the code."""
    from ..class_qgis_plugin.obslayer import COLUMNS
    from ..class_qgis_plugin.specs import default_of_field

    esc = html.escape
    rows = []
    for f in spec.params():
        m = f.metadata
        if not m["qgis"]:
            continue
        facts = [f"<code>{esc(m['key'])}</code>"]
        default = default_of_field(f)
        if default not in (None, "", {}, ()) and not m["kind"].endswith("_out"):
            facts.append(f"default {esc(_value(default))}")
        if m["choices"]:
            facts.append(("any of " if m["multiple"] else "one of ") + esc(", ".join(m["choices"])))
        if not m["required"]:
            facts.append("optional")
        text = f": {esc(m['help'])}" if m["help"] else ""
        rows.append(f"<li><b>{esc(m['label'])}</b> ({'; '.join(facts)}){text}</li>")
    parts = ["<h3>Parameters</h3>", "<ul>"] + rows + ["</ul>"]
    if stage:
        parts += ["<h3>Columns it adds to the observation layer</h3>", "<ul>"]
        parts += [f"<li><code>{esc(c.name)}</code>{f' ({esc(c.unit)})' if c.unit else ''}: {esc(c.description)}</li>"
                  for c in COLUMNS if c.stage == stage]
        parts.append("</ul>")
    return "\n".join(parts)


def help_html(cls):
    """The whole help of an algorithm class: its HELP, then for a stage algorithm the sections
    generated from its spec (:func:`spec_sections`)."""
    spec = getattr(cls, "SPEC", None)
    if spec is None:
        return cls.HELP
    return cls.HELP.rstrip() + "\n" + spec_sections(spec, getattr(cls, "LAYER_STAGE", None))


def algorithm_page(cls):
    """The help page of an algorithm class (its STEP, DISPLAY, ALG_NAME, GROUP and help)."""
    title = f"{getattr(cls, 'STEP', '')} {cls.DISPLAY}".strip()
    source = "HELP in processing_provider/" + cls.__module__.rsplit(".", 1)[-1] + ".py and its stage spec"
    return help_page(title, f"classxrf:{cls.ALG_NAME}", cls.GROUP, help_html(cls), source)


def model_page(model):
    """The help page of a shipped model (its description, steps, inputs and outputs)."""
    source = "the model's description (ALG_DESC) in scripts/make_model.py"
    return help_page(model.displayName(), f"classxrf:{model.name()}", model.group(), _model_body(model), source)
