"""simulation: simulated raw exposures, stage-2/3 inputs and the demo, apart from the production import path.

``ramps`` simulates physically honest, seeded JWST raw ramps and matching reference
files; ``pools`` makes one raw exposure per row of a real association pool (real header
templates, shipped in ``data/``) and the synthetic CRDS context that calibrates them;
``siaf``, ``optics``, ``imaging_refs``, ``sky``, ``exposures`` and ``imaging`` make what
stage-2/3 imaging needs (SIAF distortion from pysiaf, reference files, star fields seen
through each exposure's WCS, rate files); ``demo`` runs the main job end to end; ``cli``
adds ``archive simulate`` and ``archive demo`` through the entry-point group
``jwst_archive.commands``.

This package uses ``archive`` and ``calib``; neither of them (nor ``tasks``) imports it.
"""
