"""One spectroscopic mode end to end (issue 10, item 6): MIRI LRS fixed slit.

A one-row pool made from a real MIRI pool row (program 99009's first exposure, turned into
an LRS fixed-slit exposure: EXP_TYPE MIR_LRS-FIXEDSLIT, FILTER P750L, APERNAME MIRIM_SLIT)
is simulated with a point source's spectrum through the slit and the LRS stage-2 references
(:mod:`simulation.spectroscopy`), ingested, associated by the jwst generator (one spec2
association; it makes no spec3 for a single exposure) and run through the product graph on
the SQLite in-process path: uncal -> rate (calib's calwebb_detector1) -> cal + s2d + x1d
(jwst's Spec2Pipeline through the jwst engine).
"""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from tests.conftest import SHARED

POOL = SHARED / "pools" / "pool_002_image_miri.csv"


def _lrs_pool(tmp):
    from archive.ingest.pools import pool_rows

    row = dict(pool_rows(POOL)[0])
    keys = {k.lower(): k for k in row}
    row.update({keys["exp_type"]: "mir_lrs-fixedslit", keys["filter"]: "p750l", keys["apername"]: "mirim_slit",
                keys["template"]: "miri low resolution spectroscopy", keys["targname"]: "lrs-target",
                keys["subarray"]: "full"})
    pool = tmp / "jw99009_lrs_pool.csv"
    pool.write_text("|".join(row) + "\n" + "|".join(str(v) for v in row.values()) + "\n")
    return pool


@pytest.fixture(scope="module")
def lrs_world(tmp_path_factory):
    from archive.associations.associate import associate
    from archive.catalog.db import session_scope, upgrade
    from archive.config import load_settings
    from archive.crds.references import use_context
    from archive.ingest.batch import ingest
    from simulation.pools import simulate_pool

    base = tmp_path_factory.mktemp("lrs")
    data = base / "data"
    s = load_settings(data).with_(db_url=f"sqlite:///{data / 'catalog.sqlite'}", broker_url=None,
                                  crds_path=data / "crds", crds_context=None)
    for d in (s.raw_dir, s.products_dir, s.associations_dir, s.crds_path):
        d.mkdir(parents=True, exist_ok=True)
    upgrade(s.db_url)
    pool = _lrs_pool(base)
    sim = simulate_pool(pool, base / "raw", s.crds_path, seed=5, ngroups=5, nints=1, spectroscopy=True)
    assert [r.status for r in sim.rows] == ["simulated"]
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
    from simulation import spectroscopy

    s, sim, base = lrs_world
    for var in ("ARCHIVE_DB_URL", "ARCHIVE_BROKER_URL", "CRDS_CONTEXT", "ARCHIVE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    with session_scope(s.db_url) as db:
        asns = db.execute(select(Association.asn_type, Association.level)).all()
    assert sorted(asns) == [("spec2", 2)]
    w = what_if(s)                        # the context has what the mode needs: nothing predicted missing
    assert w.lacking == [] and w.by_stage["calwebb_spec2"]["waiting"] == 1
    _, outcomes = plan_and_send(s, get_dispatcher(s))
    with session_scope(s.db_url) as db:
        jobs = db.execute(select(Job).order_by(Job.id)).scalars().all()
        errors = [(j.pipeline, j.error) for j in jobs if j.status != "succeeded"]
        assert not errors, errors
        assert [(j.pipeline, j.engine) for j in jobs] == [("calwebb_detector1", "calib"), ("calwebb_spec2", "jwst")]
        current = {p.suffix: p for p in db.execute(select(Product).where(Product.is_current.is_(True))).scalars()}
        assert {"rate", "cal", "s2d", "x1d"} <= set(current)
        refs = {sfx: dict(db.execute(select(ProductReference.reftype, ProductReference.reference_file_id)
                                     .where(ProductReference.product_id == current[sfx].id)).all())
                for sfx in ("cal", "s2d", "x1d")}
        assert set(spectroscopy.LRS_REFTYPES) <= set(refs["cal"]), refs["cal"]
        assert "dark" not in refs["cal"]            # stage 1's: carried in the rate's header, not this job's
        previews = {sfx: db.execute(select(ProductPreview.kind).where(
            ProductPreview.product_id == current[sfx].id)).scalars().all() for sfx in ("s2d", "x1d")}
        assert all(sorted(k) == ["preview", "thumbnail"] for k in previews.values()), previews
        x1d_path = from_stored(current["x1d"].path, s.data_dir)
        s2d_path = from_stored(current["s2d"].path, s.data_dir)
        cal_path = from_stored(current["cal"].path, s.data_dir)
    assert fits.getval(cal_path, "R_SPCWCS").endswith("specwcs_lrs.fits")
    with datamodels.open(cal_path) as cal:
        assert cal.meta.exposure.type == "MIR_LRS-FIXEDSLIT"
        for step in ("assign_wcs", "flat_field", "pathloss", "photom"):
            assert getattr(cal.meta.cal_step, step) == "COMPLETE", step
    with datamodels.open(s2d_path) as s2d:
        assert s2d.data.ndim == 2 and np.isfinite(s2d.data).any()
    with datamodels.open(x1d_path) as x1d:
        spec = x1d.spec[0].spec_table
        wl, flux = np.asarray(spec["WAVELENGTH"], float), np.asarray(spec["FLUX"], float)
    # the trace covers 4.6-14 um; the extracted spectrum is finite and positive there
    on = (wl > 5.0) & (wl < 13.5)
    assert on.sum() > 100
    assert np.isfinite(flux[on]).mean() > 0.95 and np.nanmedian(flux[on]) > 0
    # and it is the simulated one: per row, the source's DN/s plus the sky and background in
    # the extraction box (no extract1d reference: the whole slit, no background subtracted),
    # through PHOTMJSR and the pixel solid angle (MJy/sr -> Jy)
    from simulation import optics

    conv = optics.photmjsr("MIRI", "MIRIMAGE", "F770W", None) * optics.pixar_sr("MIRI", "MIRIMAGE") * 1e6
    npix = np.asarray(spec["NPIXELS"], float)
    expected = (spectroscopy.source_spectrum(wl) + npix * (spectroscopy.BACKGROUND + spectroscopy.SLIT_SKY)) * conv
    ratio = np.nanmedian(flux[on] / expected[on])
    assert 0.75 < ratio < 1.25, ratio
    peak, red = (wl > 7.0) & (wl < 9.0), (wl > 12.0) & (wl < 13.5)   # the source is brightest near 8 um
    assert np.nanmedian(flux[peak]) > 1.1 * np.nanmedian(flux[red])


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
