"""The plugin loads in QGIS, registers the classxrf provider and its algorithms with help text."""
from qgis.core import QgsApplication


def test_provider_registered_with_algorithms(plugin):
    reg = QgsApplication.processingRegistry()
    provider = reg.providerById("classxrf")
    assert provider is not None
    ids = {a.id() for a in provider.algorithms()}
    assert "classxrf:coadd" in ids
    for alg in provider.algorithms():
        assert len(alg.shortHelpString()) > 200, alg.id()
        assert alg.group() and alg.groupId()
        assert not alg.icon().isNull(), alg.id()
