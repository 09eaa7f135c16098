"""simulation: simulated raw exposures and the demo, apart from the production import path.

``ramps`` simulates physically honest, seeded JWST raw ramps and matching reference
files; ``pools`` makes one raw exposure per row of a real association pool (real header
templates, shipped in ``data/``) and the synthetic CRDS context that calibrates them;
``demo`` runs the main job end to end; ``cli`` adds ``archive simulate`` and ``archive
demo`` through the entry-point group ``jwst_archive.commands``.

This package uses ``archive`` and ``calib``; neither of them (nor ``tasks``) imports it.
"""
