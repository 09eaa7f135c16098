"""calib.images' fast ``_rate`` read: the same ImageModel as ``datamodels.ImageModel(path)``, bit for bit."""
from __future__ import annotations

import numpy as np
from astropy.io import fits
from stdatamodels.jwst import datamodels as dm

from calib import images


def _rate(path):
    rng = np.random.default_rng(1)
    shape = (40, 56)
    model = dm.ImageModel(rng.normal(size=shape).astype(np.float32))
    model.err = rng.random(shape, np.float32)
    model.err[3, 4] = np.nan
    model.err.view(np.uint32)[5, 6] = 0x7FC01234              # a NaN with a payload
    dq = rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)
    dq[0, :4] = (0, 1, 2**31, 2**32 - 1)
    model.dq = dq
    model.var_poisson = rng.random(shape, np.float32)
    model.var_rnoise = np.full(shape, -0.0, np.float32)
    model.meta.instrument.name = "NIRCAM"
    model.meta.exposure.type = "NRC_IMAGE"
    model.save(path)
    return model


def _same(a, b):
    fa, fb = a.to_flat_dict(), b.to_flat_dict()
    assert set(fa) == set(fb)
    for key, va in fa.items():
        vb = fb[key]
        if isinstance(va, np.ndarray):
            assert va.dtype.newbyteorder("=") == vb.dtype.newbyteorder("=") and va.shape == vb.shape, key
            native = va.dtype.newbyteorder("=")
            assert va.astype(native).tobytes() == vb.astype(native).tobytes(), key
        else:
            assert va == vb, key


def test_fast_rate_read_equals_imagemodel_bit_for_bit(tmp_path):
    """SCI/ERR/VAR_* float32 and DQ uint32 (pseudo-unsigned, high bit set) read by the parallel
    pass: native arrays with the very bits astropy reads (NaN payloads, -0.0), the same metadata."""
    path = tmp_path / "jw01_rate.fits"
    _rate(path)
    fast = images._open_rate_fast(str(path))
    assert fast is not None
    with fits.open(path) as h:
        assert h["DQ"].header["BITPIX"] == 32 and h["DQ"].header["BZERO"] == 2**31
    for name in ("data", "err", "dq", "var_poisson", "var_rnoise"):
        assert getattr(fast, name).dtype.isnative, name         # read by the kernel, not astropy
    with dm.ImageModel(str(path)) as plain:
        _same(fast, plain)
    fast.close()


def test_fast_rate_read_leaves_other_encodings_to_astropy(tmp_path):
    """A float64 SCI and a scaled ERR are not plain 4-byte images: astropy reads them, the rest
    the kernel; a file that is not FITS gives None (the general path reports it)."""
    path = tmp_path / "jw01_rate.fits"
    _rate(path)
    with fits.open(path, mode="update") as h:
        h["SCI"].data = h["SCI"].data.astype(np.float64)
        h["ERR"].header["BSCALE"] = 2.0
    with fits.open(path) as h:
        assert h["SCI"].header["BITPIX"] == -64
    fast = images._open_rate_fast(str(path))
    assert fast is not None and fast.var_poisson.dtype.isnative
    with dm.ImageModel(str(path)) as plain:
        _same(fast, plain)
    fast.close()
    bad = tmp_path / "not.fits"
    bad.write_bytes(b"not a fits file")
    assert images._open_rate_fast(str(bad)) is None


def test_fast_rate_read_overlapped_equals_sequential_and_falls_back(tmp_path, monkeypatch):
    """The conversions running beside ImageModel's construction (the default) give the model the
    sequential read gives, holding the converted buffers themselves; when the model does not hold
    them (as if ImageModel had copied an array before it was filled) the file is read again
    without the overlap, and the result is still ImageModel's, bit for bit."""
    path = tmp_path / "jw01_rate.fits"
    _rate(path)
    overlapped = images._open_rate_fast(str(path))
    sequential = images._open_rate_fast(str(path), overlap=False)
    assert overlapped is not None and sequential is not None
    assert images._holds_buffers(overlapped, [overlapped.data.reshape(-1).view(np.uint32), overlapped.dq])
    assert not images._holds_buffers(overlapped, [overlapped.data.copy()])
    _same(overlapped, sequential)
    calls = []
    real = images._open_rate_fast

    def spy(p, overlap=True):
        calls.append(overlap)
        return real(p, overlap)

    monkeypatch.setattr(images, "_open_rate_fast", spy)
    monkeypatch.setattr(images, "_holds_buffers", lambda model, buffers: False)
    again = real(str(path))
    assert calls == [False]                      # read again, converting first
    with dm.ImageModel(str(path)) as plain:
        _same(again, plain)
    for m in (overlapped, sequential, again):
        m.close()
