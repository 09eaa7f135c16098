"""calwebb_detector1 steps: one module per step, each a numba kernel plus a thin step.

Working arrays shared by all steps (the RampModel layout):

* ``data``  float32 (nints, ngroups, ny, nx), DN (after group_scale)
* ``gdq``   uint8   (nints, ngroups, ny, nx), GROUPDQ bits (calib.dqflags)
* ``pdq``   uint32  (ny, nx), PIXELDQ bits

A step returns the updated arrays and a status, "COMPLETE" or "SKIPPED"; it never writes
provenance (the pipeline records S_* and R_* once).
"""
