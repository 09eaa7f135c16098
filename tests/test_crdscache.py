"""Tests of the local CRDS cache: real context, synthetic contexts from a simulated pool,
derived contexts and their differences."""
from __future__ import annotations

import shutil

import pytest
from astropy.io import fits

from archive.crds import cache as crdscache
from simulation import pools
from tests.conftest import SHARED

NRCA2 = SHARED / "headers" / "jw01075001001_03105_00009_nrca2_uncal.fits"
DETECTOR1_REFTYPES = ["dark", "gain", "ipc", "linearity", "mask", "readnoise", "saturation",
                      "superbias"]


@pytest.fixture(scope="module")
def nircam_sim(tmp_path_factory):
    """Two FULL-frame NIRCam exposures (NRCA1, NRCB1) of pool 003 with 2 groups each."""
    base = tmp_path_factory.mktemp("nircam_sim")
    res = pools.simulate_pool(SHARED / "pools" / "pool_003_image_nircam.csv", base / "out",
                              base / "crds", limit=2, ngroups=2, seed=0)
    return base, res


def test_real_context_bestrefs(tmp_path):
    cache = tmp_path / "crds"
    pmaps = crdscache.install_real_context(cache, SHARED / "crds" / "mappings")
    assert pmaps == ["jwst_0541.pmap"]
    crdscache.configure(cache)
    assert crdscache.list_contexts(cache) == ["jwst_0541.pmap"]
    hdr = dict(fits.getheader(NRCA2))
    got = crdscache.bestrefs(hdr, "jwst_0541.pmap", ["dark", "superbias", "mask", "linearity"])
    assert got == {"dark": "jwst_nircam_dark_0031.fits", "superbias": "jwst_nircam_superbias_0029.fits",
                   "mask": "jwst_nircam_mask_0031.fits", "linearity": "jwst_nircam_linearity_0051.fits"}
    # the context says PATHLOSS is not applicable to NIRCam
    assert crdscache.bestrefs(hdr, "jwst_0541.pmap", ["pathloss"]) == {"pathloss": "N/A"}


def test_bestrefs_error_names_file(nircam_sim):
    base, res = nircam_sim
    crdscache.configure(base / "crds")
    hdr = dict(fits.getheader(res.files[0]))
    hdr["DETECTOR"] = "NRCB5"              # no synthetic reference for this detector
    with pytest.raises(crdscache.BestrefsError, match="jw_00001_uncal.fits"):
        crdscache.bestrefs(hdr, res.context, ["mask"])


def test_simulated_files_select_exactly_their_references(nircam_sim):
    from stdatamodels.jwst import datamodels as dm

    base, res = nircam_sim
    crdscache.configure(base / "crds")
    assert res.context.startswith("jwst_sim_") and res.context in crdscache.list_contexts(base / "crds")
    assert [p.name for p in res.files] == ["jw_00001_uncal.fits", "jw_00002_uncal.fits"]
    for path in res.files:
        hdr = dict(fits.getheader(path))
        assert (hdr["INSTRUME"], hdr["SUBARRAY"], hdr["READPATT"]) == ("NIRCAM", "FULL", "RAPID")
        assert hdr["PROGRAM"] == "99009" and hdr["OBSERVTN"] == "001" and hdr["FILTER"] == "F090W"
        used = res.references[path.name]
        assert sorted(used) == DETECTOR1_REFTYPES
        assert crdscache.bestrefs(hdr, res.context, DETECTOR1_REFTYPES) == used
        for name in used.values():
            assert crdscache.locate(name).is_file()
        with dm.open(path) as m:
            assert isinstance(m, dm.Level1bModel) and m.data.shape == (1, 2, 2048, 2048)
        assert res.truths[path.name].is_file()
    d1 = fits.getheader(res.files[0])["DETECTOR"]
    d2 = fits.getheader(res.files[1])["DETECTOR"]
    assert (d1, d2) == ("NRCA1", "NRCB1")
    with dm.open(crdscache.locate(res.references[res.files[0].name]["dark"])) as dark:
        assert dark.meta.exposure.ngroups >= 2 and dark.meta.exposure.readpatt == "RAPID"


def test_derived_context_changes_only_replaced_references(nircam_sim, tmp_path):
    base, res = nircam_sim
    cache = base / "crds"
    crdscache.configure(cache)
    old = res.references["jw_00001_uncal.fits"]
    new_mask = tmp_path / "jwst_sim_nircam_mask_nrca1_v2.fits"
    shutil.copy(crdscache.locate(old["mask"]), new_mask)
    new_ctx = crdscache.derive_context(cache, res.context, {("nircam", "mask", "NRCA1"): new_mask})
    assert new_ctx != res.context and new_ctx in crdscache.list_contexts(cache)
    h1 = dict(fits.getheader(res.files[0]))
    h2 = dict(fits.getheader(res.files[1]))
    got1 = crdscache.bestrefs(h1, new_ctx, DETECTOR1_REFTYPES)
    assert got1 == dict(old, mask="jwst_sim_nircam_mask_nrca1_v2.fits")
    assert crdscache.bestrefs(h2, new_ctx, DETECTOR1_REFTYPES) == res.references["jw_00002_uncal.fits"]
    # the old context is unchanged
    assert crdscache.bestrefs(h1, res.context, DETECTOR1_REFTYPES) == old
    assert crdscache.context_reftypes_diff(res.context, new_ctx) == {("nircam", "mask")}
    assert crdscache.context_reftypes_diff(res.context, res.context) == set()
    with pytest.raises(KeyError):
        crdscache.derive_context(cache, res.context, {("nircam", "mask", "NRCZ9"): new_mask})


def test_switch_between_caches_in_one_process(nircam_sim, tmp_path):
    base, res = nircam_sim
    real = tmp_path / "real"
    crdscache.install_real_context(real, SHARED / "crds" / "mappings")
    hdr = dict(fits.getheader(NRCA2))
    crdscache.configure(real)
    assert crdscache.bestrefs(hdr, "jwst_0541.pmap", ["mask"]) == {"mask": "jwst_nircam_mask_0031.fits"}
    crdscache.configure(base / "crds")
    h1 = dict(fits.getheader(res.files[0]))
    assert crdscache.bestrefs(h1, res.context, ["mask"])["mask"].startswith("jwst_sim_nircam_mask_nrca1")
    with pytest.raises(FileNotFoundError):
        crdscache.locate("jwst_nircam_mask_0031.fits")


def test_derive_from_real_context_keeps_its_rules(tmp_path):
    cache = tmp_path / "crds"
    crdscache.install_real_context(cache, SHARED / "crds" / "mappings")
    crdscache.configure(cache)
    new_ref = tmp_path / "jwst_nircam_mask_sim0001.fits"
    fits.PrimaryHDU().writeto(new_ref)
    ctx = crdscache.derive_context(cache, "jwst_0541.pmap", {("nircam", "mask", "NRCA2"): new_ref})
    hdr = dict(fits.getheader(NRCA2))
    got = crdscache.bestrefs(hdr, ctx, ["dark", "superbias", "mask", "linearity"])
    assert got == {"dark": "jwst_nircam_dark_0031.fits", "superbias": "jwst_nircam_superbias_0029.fits",
                   "mask": "jwst_nircam_mask_sim0001.fits", "linearity": "jwst_nircam_linearity_0051.fits"}
    assert crdscache.bestrefs(dict(hdr, DETECTOR="NRCA3"), ctx, ["mask"]) == \
        crdscache.bestrefs(dict(hdr, DETECTOR="NRCA3"), "jwst_0541.pmap", ["mask"])
    assert crdscache.context_reftypes_diff("jwst_0541.pmap", ctx) == {("nircam", "mask")}


def test_extend_context_with_a_second_pool(nircam_sim):
    base, res = nircam_sim
    crdscache.configure(base / "crds")
    miri = pools.simulate_pool(SHARED / "pools" / "pool_002_image_miri.csv", base / "miri",
                               base / "crds", limit=1, ngroups=2, base_context=res.context)
    for r in (res, miri):
        for path in r.files:
            hdr = dict(fits.getheader(path))
            used = r.references[path.name]
            assert crdscache.bestrefs(hdr, miri.context, sorted(used)) == used
    assert {i for i, _ in crdscache.context_reftypes_diff(res.context, miri.context)} == {"miri"}
