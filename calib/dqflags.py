"""JWST data-quality bit values, re-exported from stdatamodels.

The names and values are exactly those of ``stdatamodels.jwst.datamodels.dqflags.pixel``
(DO_NOT_USE=1, SATURATED=2, JUMP_DET=4, DROPOUT=8, OUTLIER=16, PERSISTENCE=32,
AD_FLOOR=64, ..., REFERENCE_PIXEL=2**31). ``pixel`` and ``group`` are the mappings
themselves; each flag is also a module-level ``int`` constant.
"""
from stdatamodels.jwst.datamodels import dqflags as _dq

pixel: dict[str, int] = dict(_dq.pixel)
group: dict[str, int] = dict(_dq.group)

globals().update({name: int(value) for name, value in pixel.items()})

__all__ = ["pixel", "group", *sorted(pixel)]
