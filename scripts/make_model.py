"""Write resources/classxrf_chain.model3, the Processing model of the whole chain:

    simulate -> co-add -> solar fit -> FP inversion -> track population -> super-resolve

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_model.py [OUT.model3]

Open it in QGIS with Processing > Graphical Modeler > Open Model (or Processing Toolbox > Models >
Add Model to Toolbox). Replace the simulate step by your own CLASS/XSM folders in the designer to run
the chain on real data. The super-resolution step works on region (3, 4), where the simulated data set
lies; its training settings are model inputs.
"""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "class_qgis"


def build_model():
    from qgis.core import (
        QgsApplication,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource as Src,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterEnum,
        QgsProcessingParameterNumber,
        QgsProcessingParameterString,
    )
    from qgis.PyQt.QtCore import QPointF

    sys.path.insert(0, str(ROOT))
    from class_qgis_plugin.specs import FLARE_CLASSES, CoaddParams, SimulateParams
    from class_qgis_plugin.specs import SuperResParams as SR

    reg = QgsApplication.processingRegistry()
    ids = {a.id() for a in reg.algorithms()}
    model = QgsProcessingModelAlgorithm("classxrf_chain", "CLASS lunar XRF")
    model.setHelpContent({
        "ALG_DESC": "The whole CLASS XRF chain on the simulated data set with known truth: simulate -> co-add "
                    "(96-s windows) -> solar fit (XSM) -> FP inversion -> track population into the GIB -> super-resolution "
                    "of the region (GATv2 + CNN). "
                    "Swap the simulate step for real CLASS/XSM folders in the designer.",
        "ALG_CREATOR": "CLASS lunar XRF plugin", "ALG_VERSION": "1"})

    def add_param(defn, x, y):
        p = QgsProcessingModelParameter(defn.name())
        p.setPosition(QPointF(x, y))
        model.addModelParameter(defn, p)

    add_param(QgsProcessingParameterNumber("seed", "Random seed", QgsProcessingParameterNumber.Integer,
                                           SimulateParams.seed), 120, 60)
    add_param(QgsProcessingParameterNumber("tracks", "Number of orbit tracks", QgsProcessingParameterNumber.Integer,
                                           3, False, 1, 400), 120, 120)
    add_param(QgsProcessingParameterEnum("flare", "Flare class", list(FLARE_CLASSES), False,
                                         SimulateParams.flare_classes[0], usesStaticStrings=True), 120, 180)

    def child(alg_id, cid, x, y, sources, outputs=None):
        if alg_id not in ids:
            raise RuntimeError(f"{alg_id} is not registered: load the classxrf provider first")
        c = QgsProcessingModelChildAlgorithm(alg_id)
        c.setChildId(cid)
        alg = reg.algorithmById(alg_id)
        c.setDescription(getattr(alg, "DISPLAY", "") or alg.displayName())  # without the Toolbox step number
        c.setPosition(QPointF(x, y))
        for name, src in sources.items():
            c.addParameterSources(name, [src])
        # every other input takes its default as a static value, as the designer does
        for d in reg.algorithmById(alg_id).parameterDefinitions():
            if d.name() not in sources and not d.isDestination() and d.defaultValue() is not None:
                c.addParameterSources(d.name(), [Src.fromStaticValue(d.defaultValue())])
        outs = {}
        for out_name, (child_output, label) in (outputs or {}).items():
            o = QgsProcessingModelOutput(out_name, label)
            o.setChildId(cid)
            o.setChildOutputName(child_output)
            o.setPosition(QPointF(x + 220, y + 40 * (len(outs) + 1)))
            outs[out_name] = o
        c.setModelOutputs(outs)
        model.addChildAlgorithm(c)
        return cid

    child("classxrf:simulate", "simulate", 420, 90, {
        "SEED": Src.fromModelParameter("seed"), "TRACKS": Src.fromModelParameter("tracks"),
        "FLARE_CLASS": Src.fromModelParameter("flare")})
    child("classxrf:coadd", "coadd", 420, 230, {
        "INPUT": Src.fromChildOutput("simulate", "FRAMES"), "STRATEGY": Src.fromStaticValue("sliding"),
        "WINDOW": Src.fromStaticValue(CoaddParams.window), "STRIDE": Src.fromStaticValue(CoaddParams.window),
        "RMF": Src.fromChildOutput("simulate", "RMF_OUT"), "ARF": Src.fromChildOutput("simulate", "ARF_OUT"),
        "BACKGROUND": Src.fromChildOutput("simulate", "BACKGROUND")})
    child("classxrf:solarfit", "solarfit", 420, 370, {
        "INPUT": Src.fromChildOutput("coadd", "OUTPUT"), "XSM_FOLDER": Src.fromChildOutput("simulate", "XSM")})
    child("classxrf:invert", "invert", 420, 510, {
        "INPUT": Src.fromChildOutput("solarfit", "OUTPUT"),
        "RMF": Src.fromChildOutput("simulate", "RMF_OUT"), "ARF": Src.fromChildOutput("simulate", "ARF_OUT"),
        "BACKGROUND": Src.fromChildOutput("simulate", "BACKGROUND"), "SOLAR": Src.fromChildOutput("simulate", "SOLAR"),
        "STYLE_ELEMENT": Src.fromStaticValue("Al"),
        # the simulated instrument's calibration is exact: keep the fluorescence normalisation fixed, as the demo
        "FIT_NORM": Src.fromStaticValue(False)},
        {"Abundances": ("OUTPUT", "Abundance layer")})
    child("classxrf:populate", "populate", 420, 650, {
        "INPUT": Src.fromChildOutput("invert", "OUTPUT"), "ALBEDO": Src.fromChildOutput("simulate", "ALBEDO"),
        "PRIOR": Src.fromStaticValue("fraction")},
        {"GIB": ("GIB_FOLDER", "GIB folder"), "SubFootprints": ("OUTPUT", "Populated sub-footprints")})
    add_param(QgsProcessingParameterNumber("sr_k", "Super-resolution: top-k neighbours",
                                           QgsProcessingParameterNumber.Integer, SR.k, False, 1, 200), 120, 600)
    add_param(QgsProcessingParameterNumber("sr_sweeps", "Super-resolution: sweeps",
                                           QgsProcessingParameterNumber.Integer, SR.sweeps, False, 1), 120, 660)
    add_param(QgsProcessingParameterNumber("sr_steps", "Super-resolution: steps per subgraph",
                                           QgsProcessingParameterNumber.Integer, SR.steps_per_subgraph, False, 1),
              120, 720)
    add_param(QgsProcessingParameterString("sr_settings", "Super-resolution: further settings (JSON)", "",
                                           False, True), 120, 780)
    child("classxrf:superresolve", "superresolve", 420, 790, {
        "GIB": Src.fromChildOutput("populate", "GIB_FOLDER"), "ALBEDO": Src.fromChildOutput("simulate", "ALBEDO"),
        "REGION_I": Src.fromStaticValue(SR.region_i), "REGION_J": Src.fromStaticValue(SR.region_j),
        "K": Src.fromModelParameter("sr_k"), "SWEEPS": Src.fromModelParameter("sr_sweeps"),
        "STEPS": Src.fromModelParameter("sr_steps"), "SETTINGS": Src.fromModelParameter("sr_settings")},
        {"Map": ("OUTPUT", "Super-resolved abundances")})
    for cid in ("coadd", "solarfit", "invert", "populate", "superresolve"):
        model.childAlgorithm(cid).setDependencies([])
    return model


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else ROOT / "resources" / "classxrf_chain.model3"
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    tmp = Path(tempfile.mkdtemp(prefix="classxrf_pkg_"))
    os.symlink(ROOT, tmp / PACKAGE)
    sys.path.insert(0, str(tmp))
    import importlib

    plugin = importlib.import_module(PACKAGE).classFactory(None)
    plugin.initProcessing()
    model = build_model()
    ok, errors = model.validate()
    if not ok:
        raise SystemExit("model does not validate: " + "; ".join(errors))
    part = out.with_name(f".{out.stem}.part.model3")
    if not model.toFile(str(part)):
        raise SystemExit(f"could not write {part}")
    os.replace(part, out)
    print(f"wrote {out}: {', '.join(model.childAlgorithms())}")
    plugin.unload()
    del model
    app.exitQgis()


if __name__ == "__main__":
    main()
