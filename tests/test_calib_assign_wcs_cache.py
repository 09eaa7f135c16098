"""assign_wcs's cache of DISTORTION transforms: fresh copies, equal to stdatamodels' reading, never stale."""
from __future__ import annotations

import numpy as np
from stdatamodels.jwst.datamodels import DistortionModel

from calib.steps.assign_wcs import _cached_distortion_models, _distortion_transform
from simulation.imaging_refs import write_distortion


def _evaluate(transform):
    return np.array(transform(np.array([10.0, 1000.0, 2040.0]), np.array([5.0, 1500.0, 2000.0])))


def _read(path):
    with DistortionModel(str(path)) as d:
        return _evaluate(d.model)


def test_cached_transforms_are_fresh_copies_equal_to_a_plain_read(tmp_path):
    path = write_distortion(tmp_path / "distortion.asdf", "NIRCAM", "NRCA1")
    first, second = _distortion_transform(str(path)), _distortion_transform(str(path))
    assert first is not second          # jwst's builders modify the transform they get
    first.bounding_box = ((0, 10), (0, 10))
    np.testing.assert_array_equal(_evaluate(second), _read(path))
    np.testing.assert_array_equal(_evaluate(_distortion_transform(str(path))), _read(path))


def test_a_rewritten_reference_is_read_again(tmp_path):
    path = tmp_path / "distortion.asdf"
    write_distortion(path, "NIRCAM", "NRCA1")
    a1 = _evaluate(_distortion_transform(str(path)))
    path.unlink()
    write_distortion(path, "NIRCAM", "NRCB1")      # another detector's distortion under the same name
    b1 = _evaluate(_distortion_transform(str(path)))
    assert not np.array_equal(a1, b1)
    np.testing.assert_array_equal(b1, _read(path))


def test_the_builders_module_is_restored_after_use():
    import jwst.assign_wcs.nircam as nircam

    original = nircam.DistortionModel
    with _cached_distortion_models("NIRCAM"):
        assert nircam.DistortionModel is not original
    assert nircam.DistortionModel is original
    with _cached_distortion_models("NIRSPEC"):       # not a reader: nothing replaced
        pass
