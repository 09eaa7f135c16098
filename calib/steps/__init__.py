"""Stage-1 calibration steps.

Stage-1 steps (calwebb_detector1, calwebb_dark, calwebb_guider): one module per step, each
a kernel (numba or numpy) plus a thin step and its declaration (``STEP``).

Working arrays shared by the ramp steps (the RampModel layout, :class:`calib.ramps.RampState`):

* ``data``  float32 (nints, ngroups, ny, nx), DN (after group_scale)
* ``gdq``   uint8   (nints, ngroups, ny, nx), GROUPDQ bits (calib.dqflags)
* ``pdq``   uint32  (ny, nx), PIXELDQ bits

FGS guiding-mode data (:class:`calib.ramps.GuiderState`) have ``data`` and one ``dq`` uint32
(ny, nx), no GROUPDQ; guider_cds turns them into count rates ``cal`` (DN/s), which
flat_field corrects.

A step returns the updated arrays and a status, "COMPLETE" or "SKIPPED"; it never writes
provenance (the pipeline records S_* and R_* once).
"""
