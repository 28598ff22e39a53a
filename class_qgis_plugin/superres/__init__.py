"""Super-resolution of a region's composition: the GATv2 + CNN hybrid of the paper's "abundance
generalisation" step, and the baselines it is judged against.

Modules: :mod:`.settings` (the training settings; imports neither numpy nor torch), :mod:`.features`
(surface-characteristics vectors W_k from the albedo, mRMR), :mod:`.graph` (overlapping subgraphs and
top-k similarity edges), :mod:`.model` (the network), :mod:`.losses` (the five losses), :mod:`.drift`
(the classical drift), :mod:`.kriging` (residual kriging per pixel or per footprint, the GIB's
footprints), :mod:`.train` (the named steps of training and prediction, the region entry point) and
:mod:`.baselines` (IDW, ordinary kriging, kriging with albedo as external drift, the hold-out and the
folds of the evaluation).

The prediction of an element is a classical drift (a linear model in albedo and position fitted to
the observed pixels), corrected by the GATv2 + CNN network (which is trained on the normalised
residual), plus the ordinary-kriged residual the network leaves on the observed pixels (regression
kriging); see :func:`.train.fit_predict_grid`. An element the inversion never constrained (no GIB
value) is not predicted: its band is NaN (nodata).

torch and torch_geometric are imported by the submodules that need them, never by this package.
"""
