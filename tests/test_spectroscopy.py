"""One spectroscopic mode end to end (issue 10, item 6): MIRI LRS fixed slit.

A two-row pool made from real MIRI pool rows (program 99009's first two exposures, turned
into the two nods of an LRS fixed-slit ALONG-SLIT-NOD: EXP_TYPE MIR_LRS-FIXEDSLIT, FILTER
P750L, APERNAME MIRIM_SLIT, PATT_NUM 1 and 2) is simulated with a point source's spectrum
through the slit and the LRS stage-2 references (:mod:`simulation.spectroscopy`), ingested,
associated by the jwst generator (two spec2 associations, each nod the other's background,
and one spec3) and run through the product graph on the SQLite in-process path: uncal ->
rate (calib's calwebb_detector1) -> cal + s2d + x1d (jwst's Spec2Pipeline) -> s2d + x1d +
crf (jwst's Spec3Pipeline), both through the jwst engine.
"""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from tests.conftest import SHARED, embedded_archive

POOL = SHARED / "pools" / "pool_002_image_miri.csv"


def _lrs_pool(tmp):
    """Two real MIRI imaging rows turned into the two nods of an LRS fixed-slit ALONG-SLIT-NOD."""
    from archive.ingest.pools import pool_rows

    rows = []
    for n, src in enumerate(pool_rows(POOL)[:2], start=1):
        row = dict(src)
        keys = {k.lower(): k for k in row}
        row.update({keys["exp_type"]: "mir_lrs-fixedslit", keys["filter"]: "p750l", keys["apername"]: "mirim_slit",
                    keys["template"]: "miri low resolution spectroscopy", keys["targname"]: "lrs-target",
                    keys["subarray"]: "full", keys["patttype"]: "along-slit-nod", keys["numdthpt"]: "2",
                    keys["patt_num"]: str(n), keys["pattstrt"]: "1" if n == 1 else "0"})
        rows.append(row)
    pool = tmp / "jw99009_lrs_pool.csv"
    pool.write_text("|".join(rows[0]) + "\n" + "".join("|".join(str(v) for v in r.values()) + "\n" for r in rows))
    return pool


@pytest.fixture(scope="module")
def lrs_world(tmp_path_factory):
    from archive.associations.associate import associate
    from archive.catalog.db import session_scope
    from archive.crds.references import use_context
    from archive.ingest.batch import ingest
    from simulation.pools import simulate_pool

    base = tmp_path_factory.mktemp("lrs")
    data = base / "data"
    s = embedded_archive(data)
    pool = _lrs_pool(base)
    sim = simulate_pool(pool, base / "raw", s.crds_path, seed=5, ngroups=5, nints=1, spectroscopy=True)
    assert [r.status for r in sim.rows] == ["simulated", "simulated"]
    ingest(s, sim.files, pool_path=pool)
    with session_scope(s.db_url) as db:
        use_context(db, sim.context)
    associate(s)
    return s, sim, base


def test_miri_lrs_fixed_slit_uncal_to_x1d(lrs_world, monkeypatch):
    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    from archive.catalog.db import session_scope
    from archive.catalog.models import Association, Job, Product, ProductPreview, ProductReference
    from archive.catalog.paths import from_stored
    from archive.execution.dispatch import get_dispatcher
    from archive.reprocessing.planner import plan_and_send
    from archive.reprocessing.whatif import what_if
    from simulation import optics, spectroscopy

    s, sim, base = lrs_world
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    with session_scope(s.db_url) as db:
        asns = db.execute(select(Association.asn_type, Association.level)).all()
    assert sorted(asns) == [("spec2", 2), ("spec2", 2), ("spec3", 3)]   # each nod the other's background
    w = what_if(s)                        # the context has what the mode needs: nothing predicted missing
    assert w.lacking == [] and w.by_stage["calwebb_spec2"]["waiting"] == 2
    assert w.by_stage["calwebb_spec3"]["waiting"] == 1
    plan_and_send(s, get_dispatcher(s))
    with session_scope(s.db_url) as db:
        jobs = db.execute(select(Job).order_by(Job.id)).scalars().all()
        errors = [(j.pipeline, j.error) for j in jobs if j.status != "succeeded"]
        assert not errors, errors
        assert [(j.pipeline, j.engine) for j in jobs] == [("calwebb_detector1", "calib")] * 2 + [
            ("calwebb_spec2", "jwst")] * 2 + [("calwebb_spec3", "jwst")]
        current = db.execute(select(Product).where(Product.is_current.is_(True))).scalars().all()
        per_exposure = sorted((p.exposure_id, p.suffix) for p in current if p.exposure_id and p.suffix != "crf")
        assert per_exposure == sorted((e, sfx) for e in {p.exposure_id for p in current if p.exposure_id}
                                      for sfx in ("rate", "cal", "s2d", "x1d"))
        stage3 = {p.suffix: p for p in current if p.exposure_id is None}
        assert set(stage3) == {"s2d", "x1d"}
        spectra = [p for p in current if p.suffix == "x1d"]
        for p in current:
            if p.suffix in ("cal", "s2d", "x1d"):
                refs = set(db.execute(select(ProductReference.reftype)
                                      .where(ProductReference.product_id == p.id)).scalars())
                if p.exposure_id is not None:       # the spec2 job's own references (not stage 1's)
                    assert set(spectroscopy.LRS_REFTYPES) - {"extract1d"} <= refs and "dark" not in refs, refs
                    assert ("extract1d" in refs) == (p.suffix == "x1d")
                elif p.suffix == "x1d":             # spec3's extract_1d read it too: the job's own
                    assert "extract1d" in refs and "dark" not in refs, refs
            if p.suffix in ("s2d", "x1d"):          # the s2d image, the x1d plotted
                kinds = db.execute(select(ProductPreview.kind).where(ProductPreview.product_id == p.id)).scalars()
                assert sorted(kinds) == ["preview", "thumbnail"], p.filename
        paths = {p.filename: from_stored(p.path, s.data_dir) for p in current}
    cal_path = next(v for k, v in paths.items() if k.endswith("_cal.fits"))
    assert fits.getval(cal_path, "R_SPCWCS").startswith("crds://jwst_sim_miri_specwcs_lrs")
    with datamodels.open(cal_path) as cal:
        assert cal.meta.exposure.type == "MIR_LRS-FIXEDSLIT"
        for step in ("assign_wcs", "bkg_subtract", "flat_field", "pathloss", "photom"):
            assert getattr(cal.meta.cal_step, step) == "COMPLETE", step
    with datamodels.open(paths[stage3["s2d"].filename]) as s2d:
        assert s2d.data.ndim == 2 and np.isfinite(s2d.data).any()
    # each x1d (both nods, and the combined stage-3 one) is the simulated spectrum: the
    # source's DN/s per row (the nods' difference removed sky and background) through
    # PHOTMJSR and the pixel solid angle (MJy/sr -> Jy), within the slit and extraction losses
    conv = optics.photmjsr("MIRI", "MIRIMAGE", "F770W", None) * optics.pixar_sr("MIRI", "MIRIMAGE") * 1e6
    assert len(spectra) == 3
    for p in spectra:
        with datamodels.open(paths[p.filename]) as x1d:
            spec = x1d.spec[0].spec_table
            wl, flux = np.asarray(spec["WAVELENGTH"], float), np.asarray(spec["FLUX"], float)
        on = (wl > 5.0) & (wl < 13.5)                      # the trace covers 4.6-14 um
        assert on.sum() > 100 and np.isfinite(flux[on]).mean() > 0.95, p.filename
        ratio = np.nanmedian(flux[on] / (spectroscopy.source_spectrum(wl[on]) * conv))
        assert 0.85 < ratio < 1.1, (p.filename, ratio)
        peak, red = (wl > 7.0) & (wl < 9.0), (wl > 12.0) & (wl < 13.5)   # the source is brightest near 8 um
        assert np.nanmedian(flux[peak]) > 1.2 * np.nanmedian(flux[red]), p.filename


def test_imaging_and_lrs_of_one_instrument_share_a_context(tmp_path):
    """A pool with MIRI imaging and LRS exposures: each mode's reftypes are N/A for the other
    in the rmaps they share an instrument in, so crds can select every reftype jwst's image2
    and spec2 prefetch for their exposures (nothing the plan would call missing)."""
    from astropy.io import fits

    from archive.crds import cache as crdscache
    from archive.execution.jwst_engine import prefetch_reftypes
    from archive.ingest.pools import pool_rows
    from simulation.pools import simulate_pool

    lrs_pool = _lrs_pool(tmp_path)
    imaging = pool_rows(POOL)[1]
    lrs = pool_rows(lrs_pool)[0]
    pool = tmp_path / "jw99009_mixed_pool.csv"
    pool.write_text("|".join(imaging) + "\n" + "".join("|".join(str(v) for v in r.values()) + "\n"
                                                        for r in (imaging, lrs)))
    sim = simulate_pool(pool, tmp_path / "raw", tmp_path / "crds", seed=2, ngroups=2, nints=1, imaging=True,
                        spectroscopy=True, max_stars=200)
    assert [r.status for r in sim.rows] == ["simulated", "simulated"]
    crdscache.configure(tmp_path / "crds")
    for path in sim.files:
        header = dict(fits.getheader(path)) | dict(fits.getheader(path, "SCI"))
        pipeline = "calwebb_spec2" if header["EXP_TYPE"] == "MIR_LRS-FIXEDSLIT" else "calwebb_image2"
        assert crdscache.unselectable(header, sim.context, prefetch_reftypes(pipeline)) == {}, path.name
        refs = crdscache.bestrefs(header, sim.context, ["specwcs", "pathloss", "filteroffset", "area", "flat"])
        if pipeline == "calwebb_spec2":
            assert refs["filteroffset"] == refs["area"] == "N/A" and refs["specwcs"] != "N/A"
        else:
            assert refs["specwcs"] == refs["pathloss"] == "N/A" and refs["filteroffset"] != "N/A"
        assert refs["flat"] != "N/A"
