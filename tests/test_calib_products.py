"""calib.products' atomic product writes: what is written, what is left on failure, the early writeback."""
from __future__ import annotations

import numpy as np
import pytest
from stdatamodels.jwst import datamodels as dm

import calib.products as products


def _model():
    model = dm.ImageModel(np.arange(64 * 48, dtype=np.float32).reshape(64, 48))
    model.err = np.full((64, 48), 0.5, np.float32)
    model.dq = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48)
    return model


def test_write_atomic_writes_the_model_and_starts_writeback_per_hdu(tmp_path, monkeypatch):
    """The product reopens as the same ImageModel; the disk writeback was started after each HDU
    (astropy's flush) on the temporary file, before the fsync and the link."""
    calls = []

    def recorder(fd, offset, nbytes, flags):
        calls.append((fd, offset, nbytes, flags, sorted(p.name for p in tmp_path.iterdir())))
        return 0

    monkeypatch.setattr(products, "_SYNC_FILE_RANGE", recorder)
    model = _model()
    final = tmp_path / "jw01_cal.fits"
    products.write_atomic(model, final)
    with dm.open(final) as back:
        assert isinstance(back, dm.ImageModel)
        for name in ("data", "err", "dq"):
            np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
            assert getattr(back, name).dtype.newbyteorder("=") == getattr(model, name).dtype
    assert len(calls) >= 4                                  # PRIMARY, SCI, ERR, DQ (and ASDF)
    assert {c[3] for c in calls} == {products._SYNC_FILE_RANGE_WRITE}
    assert {(c[1], c[2]) for c in calls} == {(0, 0)}        # the whole file
    # the final name did not exist while writing: only the temporary
    assert all(len(c[4]) == 1 and c[4][0].startswith(".jw01_cal.fits.") for c in calls)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jw01_cal.fits"]


def test_write_atomic_leaves_nothing_when_the_write_fails(tmp_path, monkeypatch):
    """A write failing half-way (some bytes already in the temporary file): no product, no temporary."""
    model = _model()

    def half(self, fh, *a, **kw):
        fh.write(b"SIMPLE  =                    T" + b" " * 50)
        fh.flush()
        raise OSError("disk full")

    monkeypatch.setattr(dm.ImageModel, "to_fits", half)
    with pytest.raises(OSError, match="disk full"):
        products.write_atomic(model, tmp_path / "jw01_cal.fits")
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_refuses_an_existing_product(tmp_path):
    final = tmp_path / "jw01_cal.fits"
    final.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        products.write_atomic(_model(), final)
    assert final.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["jw01_cal.fits"]


@pytest.mark.skipif(products._SYNC_FILE_RANGE is None, reason="no sync_file_range (not Linux)")
def test_sync_file_range_is_libcs(tmp_path):
    """The ctypes binding works on this host (a real call on a real file returns 0)."""
    p = tmp_path / "f"
    with products._WritebackFile(open(p, "wb", buffering=0)) as fh:
        fh.write(b"x" * 10000)
        fh.flush()
        assert products._SYNC_FILE_RANGE(fh.fileno(), 0, 0, products._SYNC_FILE_RANGE_WRITE) == 0
    assert p.read_bytes() == b"x" * 10000


def test_write_atomic_consume_writes_the_same_file_and_keeps_the_values(tmp_path):
    """consume=True: the same FITS bytes as without it (but DATE and the header hash that covers
    it); the model keeps its values, its float32/int32 arrays now big-endian; an array sharing
    memory with another product's (``others``) or a uint32 one is left as it was."""
    from astropy.io import fits

    model = _model()
    model.con = np.arange(2 * 64 * 48, dtype=np.int32).reshape(2, 64, 48)
    shared = np.arange(64 * 48 * 2, dtype=np.float32)
    model.var_poisson = shared[:64 * 48].reshape(64, 48)       # a view of another product's array
    before = {k: np.array(v) for k, v in model.instance.items() if isinstance(v, np.ndarray)}
    products.write_atomic(model, tmp_path / "plain.fits")
    products.write_atomic(model, tmp_path / "consumed.fits", consume=True, others=[shared])
    for name, value in before.items():
        now = model.instance[name]
        np.testing.assert_array_equal(now, value)
        assert now.dtype.newbyteorder("=") == value.dtype
    assert model.data.dtype.byteorder == ">" and model.err.dtype.byteorder == ">" and model.con.dtype.byteorder == ">"
    assert model.var_poisson.dtype.byteorder in "=<" and model.dq.dtype.byteorder in "=|<"
    np.testing.assert_array_equal(shared, np.arange(64 * 48 * 2, dtype=np.float32))
    with fits.open(tmp_path / "plain.fits") as a, fits.open(tmp_path / "consumed.fits") as b:
        assert [h.name for h in a] == [h.name for h in b]
        for ha, hb in zip(a, b, strict=True):
            if ha.name == "ASDF":
                continue
            assert ha.header.tostring().replace(ha.header.get("DATE", ""), "") == \
                hb.header.tostring().replace(hb.header.get("DATE", ""), "")
            assert ha._data_offset == hb._data_offset and ha._data_size == hb._data_size
    raw_a, raw_b = (tmp_path / "plain.fits").read_bytes(), (tmp_path / "consumed.fits").read_bytes()
    with fits.open(tmp_path / "plain.fits") as a:
        for h in a[1:]:
            if h.name != "ASDF":
                span = slice(h._data_offset, h._data_offset + h._data_size)
                assert raw_a[span] == raw_b[span], h.name
    # written again from the big-endian arrays: the same data
    products.write_atomic(model, tmp_path / "again.fits", consume=True)
    with fits.open(tmp_path / "again.fits") as c:
        np.testing.assert_array_equal(c["SCI"].data, before["data"])
        np.testing.assert_array_equal(c["CON"].data, before["con"])


def test_snapshot_writes_a_blended_models_header_table(tmp_path):
    """A model whose schema jwst's header blender extended (an image3 _i2d with HDRTAB) is written
    from run_and_save's snapshot with that table, as the model itself would be: DataModel.copy
    alone starts from the class's schema and the HDRTAB extension is lost."""
    from astropy.io import fits
    from jwst.model_blender.blender import ModelBlender

    members = []
    for k in range(2):
        m = _model()
        m.meta.exposure.start_time = 60000.0 + k
        members.append(m)
    out = _model()
    blender = ModelBlender()
    for m in members:
        blender.accumulate(m)
    blender.finalize_model(out)
    products.write_atomic(out, tmp_path / "direct_i2d.fits")
    snap = products._snapshot(out)
    assert not snap.data.flags.writeable and np.shares_memory(snap.data, out.data)
    products.write_atomic(snap, tmp_path / "snapshot_i2d.fits")
    with fits.open(tmp_path / "direct_i2d.fits") as a, fits.open(tmp_path / "snapshot_i2d.fits") as b:
        assert "HDRTAB" in a and [h.name for h in a] == [h.name for h in b]
        assert len(b["HDRTAB"].data) == 2
        assert a["HDRTAB"].data.tobytes() == b["HDRTAB"].data.tobytes()
    # the model's own table is untouched (a copy was encoded)
    assert len(out.hdrtab) == 2


def test_wait_for_writes_returns_when_the_model_is_released_not_after_the_fsync(tmp_path, monkeypatch):
    """A step waiting for the background write (calib.background.wait_for_writes) goes on once the
    product's bytes are in the file and the writer holds the model no more; the fsync may still
    be running, and the writer's wait() still waits for it and the link."""
    import threading
    import weakref

    from calib.background import BackgroundWrite, wait_for_writes

    gate = threading.Event()
    real_fsync = products.os.fsync

    def slow_fsync(fd):
        gate.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(products.os, "fsync", slow_fsync)
    model = _model()
    alive = weakref.ref(model)
    final = tmp_path / "jw01_cal.fits"
    w = BackgroundWrite(products.write_atomic, model, final)
    del model
    wait_for_writes()
    assert alive() is None                      # released: nothing holds the model's arrays
    assert not final.exists()                   # the fsync (and the link after it) has not run
    gate.set()
    w.wait()
    w.forget()
    with dm.open(final) as back:
        np.testing.assert_array_equal(back.data, _model().data)


def _hdus(read_only: bool):
    """Image HDUs of every kind :func:`calib.products._write_swapped` takes, and some it leaves to astropy."""
    from astropy.io import fits

    rng = np.random.default_rng(5)
    f32 = rng.normal(0.0, 3.0, (37, 41)).astype(np.float32)
    f32[0, :3] = (np.nan, np.inf, -0.0)
    u32 = rng.integers(0, 2**32, (37, 41), dtype=np.uint64).astype(np.uint32)
    u32[0, :4] = (0, 2**31 - 1, 2**31, 2**32 - 1)
    i32 = rng.integers(-2**31, 2**31, (3, 37, 41), dtype=np.int64).astype(np.int32)
    arrays = {"SCI": f32, "DQ": u32, "CON": i32,
              "BIG": f32.astype(">f4"),                   # already big-endian: astropy's path
              "STRIDED": f32[:, ::2],                     # not contiguous: astropy's path
              "F64": f32.astype(np.float64)}              # 8-byte: astropy's path
    hdus = [fits.PrimaryHDU()]
    for name, a in arrays.items():
        if read_only:
            a = a.view()
            a.flags.writeable = False
        hdus.append(fits.ImageHDU(a, name=name))
    # an ImageHDU subclass writes its own way (a lossless tile-compressed table): astropy's
    hdus.append(fits.CompImageHDU(i32[0].copy(), name="COMP", compression_type="RICE_1"))
    return fits.HDUList(hdus), arrays


@pytest.mark.parametrize("read_only", [True, False])
def test_swapped_writes_are_astropys_bytes(tmp_path, monkeypatch, read_only):
    """Through write_atomic's chunked writer (chunks of 300 elements, so arrays span several,
    the last partial) the file is byte for byte what astropy writes itself, for float32 with
    NaN/inf/-0, uint32 (pseudo-unsigned: BZERO 2**31) at its extremes, int32 cubes, read-only
    or not; the arrays are unchanged; big-endian, strided and 8-byte arrays and a compressed
    HDU go to astropy."""
    from astropy.io import fits

    hdul, arrays = _hdus(read_only)
    before = {k: np.array(v) for k, v in arrays.items()}
    hdul.writeto(tmp_path / "astropy.fits")
    taken = []
    real = products._write_swapped
    monkeypatch.setattr(products, "_write_swapped", lambda d, f: (taken.append(d.dtype.str), real(d, f))[1])
    monkeypatch.setattr(products, "_CHUNK", 300)
    monkeypatch.setattr(products, "_BUFFERS", [])
    assert products._install_swapped_writes()
    hdul2, _ = _hdus(read_only)
    products._SWAPPED_WRITES.on = True
    try:
        hdul2.writeto(tmp_path / "chunked.fits")
    finally:
        products._SWAPPED_WRITES.on = False
    assert sorted(taken) == sorted(["<f4", "<u4", "<i4"])
    assert (tmp_path / "chunked.fits").read_bytes() == (tmp_path / "astropy.fits").read_bytes()
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k])
    with fits.open(tmp_path / "chunked.fits") as back:
        np.testing.assert_array_equal(back["DQ"].data, before["DQ"])
        np.testing.assert_array_equal(back["SCI"].data, before["SCI"])
    # outside write_atomic (the flag off) astropy's own method writes
    taken.clear()
    hdul2.writeto(tmp_path / "plain.fits")
    assert taken == [] and (tmp_path / "plain.fits").read_bytes() == (tmp_path / "astropy.fits").read_bytes()


def test_write_atomic_of_a_snapshot_is_the_file_astropy_writes(tmp_path, monkeypatch):
    """A read-only snapshot's _cal (the background writer's case) written through the chunked
    writer and through astropy's own copies: the same bytes, apart from DATE and what covers it."""
    from astropy.io import fits

    model = _model()
    model.var_poisson = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
    snap = products._snapshot(model)
    assert not snap.data.flags.writeable
    taken = []
    real = products._write_swapped
    monkeypatch.setattr(products, "_write_swapped", lambda d, f: (taken.append(d.dtype.str), real(d, f))[1])
    products.write_atomic(snap, tmp_path / "chunked.fits")
    assert sorted(taken) == ["<f4", "<f4", "<f4", "<u4"]    # SCI, ERR, VAR_POISSON, DQ: the chunked path
    monkeypatch.setattr(products, "_install_swapped_writes", lambda: False)
    products.write_atomic(products._snapshot(model), tmp_path / "astropy.fits")
    raw_a, raw_b = (tmp_path / "astropy.fits").read_bytes(), (tmp_path / "chunked.fits").read_bytes()
    with fits.open(tmp_path / "astropy.fits") as a, fits.open(tmp_path / "chunked.fits") as b:
        assert [h.name for h in a] == [h.name for h in b]
        for ha, hb in zip(a[1:], b[1:], strict=True):
            if ha.name != "ASDF":
                assert ha.header == hb.header
                assert raw_a[ha._data_offset:ha._data_offset + ha._data_size] == \
                    raw_b[hb._data_offset:hb._data_offset + hb._data_size], ha.name
        np.testing.assert_array_equal(b["DQ"].data, model.dq)
