"""The Processing Toolbox lists the provider in pipeline order: QGIS's own toolbox model
(``QgsProcessingToolboxProxyModel``, which sorts groups and algorithm names alphabetically with a
locale-aware compare) reads simulate, co-add, solar fit, invert, populate, super-resolve; basemap,
export map; the chain model, the mission archive; set-up. The algorithm ids stay what they were."""
from qgis.core import QgsApplication

PIPELINE = ["classxrf:simulate", "classxrf:coadd", "classxrf:solarfit", "classxrf:invert", "classxrf:populate",
            "classxrf:superresolve", "classxrf:basemap", "classxrf:exportmap", "classxrf:classxrf_chain",
            "classxrf:archive", "classxrf:dependencies"]


def _toolbox_listing():
    """[(group name, [algorithm id, ...])] under the classxrf provider, in the order the Toolbox shows."""
    from qgis.gui import QgsProcessingToolboxProxyModel

    proxy = QgsProcessingToolboxProxyModel(None, QgsApplication.processingRegistry())
    proxy.setFilters(QgsProcessingToolboxProxyModel.FilterToolbox)
    source = proxy.toolboxModel()
    provider_index = proxy.mapFromSource(source.indexForProvider("classxrf"))
    assert provider_index.isValid()
    listing = []
    for g in range(proxy.rowCount(provider_index)):
        group = proxy.index(g, 0, provider_index)
        ids = []
        for a in range(proxy.rowCount(group)):
            alg = source.algorithmForIndex(proxy.mapToSource(proxy.index(a, 0, group)))
            assert alg is not None, proxy.data(proxy.index(a, 0, group))
            ids.append(alg.id())
        listing.append((proxy.data(group), ids))
    return listing


def test_toolbox_reads_in_pipeline_order(plugin):
    listing = _toolbox_listing()
    order = [alg_id for _, ids in listing for alg_id in ids]
    assert order == PIPELINE, listing
    groups = [name for name, _ in listing]
    assert groups == ["1 Data", "2 Spectra", "3 Spectral analysis", "4 Abundance maps", "5 Basemap and export",
                      "6 Models", "9 Set-up"]


def test_display_names_carry_the_step_and_ids_are_unchanged(plugin):
    reg = QgsApplication.processingRegistry()
    names = {a: reg.algorithmById(a).displayName() for a in PIPELINE}
    assert names["classxrf:simulate"] == "1.1 Simulate a CLASS data set (known truth)"
    assert names["classxrf:solarfit"].startswith("3.1 ") and names["classxrf:invert"].startswith("3.2 ")
    assert names["classxrf:classxrf_chain"].startswith("6.1 ") and names["classxrf:archive"].startswith("6.2 ")
    assert {a.id() for a in reg.providerById("classxrf").algorithms()} == set(PIPELINE)
