"""The dark reference read lazily: only the frames and window the exposure uses.

The dark_current step prepares a DARK reference through
:class:`calib.references.ReferenceSections` (header mapped by stdatamodels, arrays read by
FITS sections). These tests write small darks in the real formats (DarkModel 3-D, DarkMIRIModel
4-D) and check that the prepared dark equals what :func:`prepare_dark` gives on the whole
arrays loaded by stdatamodels, bit for bit (NaN positions included), for every matching
path: frames averaged (NFRAMES/GROUPGAP of the science larger than the dark's), frames
copied, a dark shorter than the science (extrapolated), a science subarray inside a larger
dark, a multi-integration MIRI dark; and that only the frames averaged into the science
groups are read.
"""
from __future__ import annotations

import numpy as np
import pytest
from stdatamodels.jwst import datamodels as dm

from calib.errors import ReferenceFileError
from calib.references import ExposureInfo, ReferenceSections, SectionArray, ref_array, subarray_of
from calib.steps.dark_current import _prepare, prepare_dark
from tests.conftest import shared


def _info(instrument="NIRCAM", *, ngroups, nframes, groupgap, xstart=1, ystart=1, xsize=40, ysize=24):
    return ExposureInfo(path="sci_uncal.fits", instrument=instrument, detector="NRCA1", exp_type="NRC_IMAGE",
                        nints=1, ngroups=ngroups, nframes=nframes, groupgap=groupgap, frame_divisor=nframes,
                        group_time=10.0, frame_time=1.0, xstart=xstart, ystart=ystart, xsize=xsize,
                        ysize=ysize, fastaxis=1, slowaxis=2, noutputs=4, subarray="SUB")


def _write_dark(path, data, dq, *, nframes=1, groupgap=0, miri=False, avg=None):
    cls = dm.DarkMIRIModel if miri else dm.DarkModel
    m = cls(data=data, dq=dq)
    if avg is not None:
        m.average_dark_current = avg
    m.meta.instrument.name = "MIRI" if miri else "NIRCAM"
    m.meta.instrument.detector = "MIRIMAGE" if miri else "NRCA1"
    m.meta.reftype = "DARK"
    m.meta.subarray.name, m.meta.subarray.xstart, m.meta.subarray.ystart = "GENERIC", 1, 1
    m.meta.subarray.ysize, m.meta.subarray.xsize = data.shape[-2:]
    m.meta.exposure.nframes, m.meta.exposure.groupgap = nframes, groupgap
    m.meta.exposure.average_dark_current = 0.0123
    m.save(str(path))
    m.close()
    return str(path)


def _eager(path, info, miri=False):
    """What the step computed before: the whole reference loaded by stdatamodels."""
    cls = dm.DarkMIRIModel if miri else dm.DarkModel
    with cls(path) as m:
        dark = np.array(subarray_of(np.asarray(m.data), m, info, path, "dark_current", "DATA"))
        ddq = ref_array(m, "dq", info, path, "dark_current", dtype=np.uint32)
        return prepare_dark(dark, ddq, ngroups=info.ngroups, nframes=info.nframes, groupgap=info.groupgap,
                            dark_nframes=int(m.meta.exposure.nframes), dark_groupgap=int(m.meta.exposure.groupgap))


def _lazy(path, info):
    with ReferenceSections(path, "dark", "dark_current", info) as ref:
        return _prepare(ref, path, info, "dark_current")


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.array_equal(a, b, equal_nan=True)


def _frames(rng, shape):
    d = (rng.normal(0, 3, shape) + np.arange(shape[-3], dtype=float)[:, None, None]).astype(np.float32)
    d[..., 3, 5] = np.nan                 # NaN in every frame of one pixel
    d[..., 2, 7, 9] = np.nan              # and in one frame of another
    return d


@pytest.mark.parametrize("readout", [(6, 4, 1, "averaged"), (5, 1, 0, "copied"), (30, 1, 0, "extrapolated")])
def test_lazy_dark_equals_the_whole_dark(tmp_path, readout):
    ngroups, nframes, groupgap, _ = readout
    rng = np.random.default_rng(11)
    data = _frames(rng, (24, 24, 40))      # 24 frames, NFRAMES 1
    dq = np.zeros((24, 40), np.uint32)
    dq[1, 2] = 2048
    path = _write_dark(tmp_path / "dark.fits", data, dq, avg=rng.random((24, 40)).astype(np.float32))
    info = _info(ngroups=ngroups, nframes=nframes, groupgap=groupgap)
    matched, ddq, avg = _lazy(path, info)
    want, want_dq = _eager(path, info)
    _same(matched, want)
    _same(ddq, want_dq)
    assert matched.shape == (1, ngroups, 24, 40) and not np.isnan(matched).any()
    assert avg.shape == (24, 40) and avg.dtype == np.float32


def test_lazy_dark_cut_to_a_subarray(tmp_path):
    rng = np.random.default_rng(5)
    data = _frames(rng, (20, 24, 40))
    dq = rng.integers(0, 2, (24, 40)).astype(np.uint32) * 2048
    path = _write_dark(tmp_path / "dark.fits", data, dq)
    info = _info(ngroups=4, nframes=2, groupgap=1, xstart=7, ystart=3, xsize=16, ysize=10)
    matched, ddq, avg = _lazy(path, info)
    want, want_dq = _eager(path, info)
    _same(matched, want)
    _same(ddq, want_dq)
    assert matched.shape == (1, 4, 10, 16)
    assert avg == pytest.approx(0.0123)         # no AVDRKCUR array: the keyword


def test_lazy_miri_dark_per_integration(tmp_path):
    rng = np.random.default_rng(9)
    data = _frames(rng, (2, 9, 24, 40))
    dq = np.zeros(data.shape, np.uint32)
    dq[0, 0, 4, 4] = 2048
    dq[1, 0, 5, 6] = 1
    dq[1, 3, 7, 7] = 4                          # not in the first group: not propagated
    path = _write_dark(tmp_path / "dark.fits", data, dq, miri=True)
    info = _info("MIRI", ngroups=6, nframes=1, groupgap=0, xstart=5, ystart=2, xsize=32, ysize=20)
    matched, ddq, _ = _lazy(path, info)
    want, want_dq = _eager(path, info, miri=True)
    _same(matched, want)
    _same(ddq, want_dq)
    assert matched.shape == (2, 6, 20, 32)
    assert ddq[4 - 1, 4 - 4] == 2048 and ddq[5 - 1, 6 - 4] == 1 and not (ddq & 4).any()


def test_only_the_used_frames_are_read(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    path = _write_dark(tmp_path / "dark.fits", _frames(rng, (40, 24, 40)), np.zeros((24, 40), np.uint32))
    read = []
    original = SectionArray.__getitem__

    def recording(self, key):
        out = original(self, key)
        if out.ndim == 4:
            read.append(out.shape[1])
        return out
    monkeypatch.setattr(SectionArray, "__getitem__", recording)
    info = _info(ngroups=3, nframes=4, groupgap=2)     # frames 0-3, 6-9, 12-15: 12 of 40
    _lazy(path, info)
    assert read == [4, 4, 4]


def test_a_dark_not_covering_the_subarray_names_the_file(tmp_path):
    path = _write_dark(tmp_path / "dark.fits", np.zeros((3, 24, 40), np.float32), np.zeros((24, 40), np.uint32))
    info = _info(ngroups=2, nframes=1, groupgap=0, xstart=30, ystart=1, xsize=16, ysize=10)
    with pytest.raises(ReferenceFileError, match="dark.fits.*does not cover"):
        _lazy(path, info)
    (tmp_path / "bad.fits").write_bytes(b"not a FITS file")
    with pytest.raises(ReferenceFileError, match="bad.fits"):
        _lazy(str(tmp_path / "bad.fits"), info)


def test_real_nirspec_dark_dq_mapped_through_its_dq_def():
    """The real CRDS NRS1 SUB512 dark stores DQ as uint8 with its own bit values (HOT = 4):
    the lazy read maps them to the standard flags as stdatamodels does on open."""
    path = str(shared("crds", "references", "jwst_nirspec_dark_0046.fits"))
    info = _info("NIRSPEC", ngroups=8, nframes=1, groupgap=0, xstart=1025, ystart=957, xsize=512, ysize=32)
    matched, ddq, _ = _lazy(path, info)
    want, want_dq = _eager(path, info)
    _same(matched, want)
    _same(ddq, want_dq)
    assert (ddq & 2048).any()                  # HOT, stored as 4 in the file
    sub = _info("NIRSPEC", ngroups=3, nframes=2, groupgap=1, xstart=1100, ystart=960, xsize=64, ysize=20)
    matched, ddq, _ = _lazy(path, sub)
    want, want_dq = _eager(path, sub)
    _same(matched, want)
    _same(ddq, want_dq)


@pytest.mark.parametrize("source", ["real_fgs", "simulated_nircam"])
def test_level1b_sci_read_straight_from_the_files_bytes(source, tmp_path):
    """open_ramp reads a raw exposure's SCI (FITS pseudo-unsigned int16) by converting the file's
    bytes to float32 itself: the fast path is taken on the real FGS exposure and on a simulated
    NIRCam one, and gives SCI and the model's metadata exactly as datamodels.open does; a file
    of another kind (here SCI written as float32) takes the general path."""
    from astropy.io import fits

    from calib.ramps import _open_level1b_fast
    from tests.test_calib_support import make_nircam

    path = (str(shared("raw", "jw01019001001_gs-acq1_2022117003102_uncal.fits")) if source == "real_fgs"
            else make_nircam(tmp_path, nints=2, ngroups=5).uncal)
    fast = _open_level1b_fast(path)
    assert fast is not None, "the fast path was not taken"
    model, data = fast
    with dm.open(path) as ref:
        assert data.dtype == np.float32
        np.testing.assert_array_equal(data, ref.data.astype(np.float32))
        assert model.meta.instance == ref.meta.instance
        for name in ("pixeldq", "groupdq", "zeroframe", "refout"):
            if getattr(ref, name, None) is not None and ref.hasattr(name):
                np.testing.assert_array_equal(getattr(model, name), getattr(ref, name))
    model.close()
    other = tmp_path / "float_uncal.fits"
    with fits.open(path) as hdul:
        hdul["SCI"].data = hdul["SCI"].data.astype(np.float32)
        hdul.writeto(other)
    assert _open_level1b_fast(str(other)) is None
