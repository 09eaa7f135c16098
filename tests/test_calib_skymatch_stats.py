"""calib's compiled sky statistic (skymatch) against stcal's ``SkyStats`` (stsci.imagestats), the oracle jwst runs."""
from __future__ import annotations

import numpy as np
import pytest

STATS = ("mode", "midpt", "mean", "median")


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


def _both(data, **kw):
    """(ours, stcal's) value and npix, or the exception type each raised."""
    from stcal.skymatch import SkyStats

    from calib.steps.skymatch import SkyStatistic

    res = []
    for stat in (SkyStatistic(kw.get("skystat", "mode"), kw.get("lower"), kw.get("upper"), kw.get("nclip", 5),
                              kw.get("lsig", 4.0), kw.get("usig", 4.0), kw.get("binwidth", 0.1)),
                 SkyStats(**kw)):
        try:
            res.append(stat(data))
        except ValueError:
            res.append(ValueError)
    return res


def _datasets(seed):
    rng = np.random.default_rng(seed)
    sky = rng.normal(0.2, 0.03, 200_000).astype(np.float32)
    sky[rng.integers(0, sky.size, 500)] += rng.exponential(20.0, 500).astype(np.float32)    # stars, cosmic rays
    yield sky
    yield rng.normal(-3.0, 1.0, 5_000)                                  # float64: cast to float32 as imagestats does
    yield rng.poisson(4.0, 20_000).astype(np.float32)                   # many equal values: ties in the histogram
    yield rng.uniform(0, 1, 7).astype(np.float32)
    yield np.array([1.5, 2.5], np.float32)
    yield np.full(50, 0.25, np.float32)                                 # zero spread: one bin
    yield np.array([0.1], np.float32)                                   # one value: NaN deviation
    yield rng.normal(0, 1, (40, 60)).astype(np.float32)                 # 2-D, as the whole-image sky


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("skystat", STATS)
def test_sky_statistic_equals_stcal_skystats(seed, skystat):
    for k, data in enumerate(_datasets(seed)):
        for kw in ({}, {"nclip": 0}, {"nclip": 3, "lsig": 2.5, "usig": 3.0, "binwidth": 0.3},
                   {"lower": -0.5, "upper": 5.0}, {"lower": 0.21}, {"upper": -10.0}, {"binwidth": 0.01}):
            ours, theirs = _both(data, skystat=skystat, **kw)
            if theirs is ValueError or ours is ValueError:
                assert ours is theirs, (k, kw)
                continue
            assert _same(ours[0], theirs[0]) and ours[1] == theirs[1], (k, kw, ours, theirs)


def test_sky_statistic_bad_parameters_raise_as_stcal():
    data = np.linspace(0, 1, 100, dtype=np.float32)
    for kw in ({"nclip": -1}, {"lsig": 0.0}, {"usig": -1.0}, {"binwidth": 0.0}):
        assert _both(data, **kw) == [ValueError, ValueError]
    assert _both(np.zeros(0, np.float32)) == [ValueError, ValueError]


def _tan_wcs(ra, dec, shape, scale_deg=3e-5, rot=0.0):
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    ny, nx = shape
    fwd = ((am.Shift(-(nx - 1) / 2) & am.Shift(-(ny - 1) / 2)) | am.Rotation2D(rot)
           | (am.Scale(scale_deg) & am.Scale(scale_deg)) | am.Pix2Sky_TAN() | am.RotateNative2Celestial(ra, dec, 180))
    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    w = wcs.WCS([(det, fwd), (sky, None)])
    w.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return w


def _members(seed, n=4, shape=(150, 220), big_endian=False):
    from stdatamodels.jwst import datamodels

    rng = np.random.default_rng(seed)
    models = []
    for k in range(n):
        data = rng.normal(0.2 + 0.05 * k, 0.03, shape).astype(np.float32)
        data[rng.integers(0, shape[0], 60), rng.integers(0, shape[1], 60)] += 30.0     # stars, cosmic rays
        data[rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] = np.nan
        dq = np.zeros(shape, np.uint32)
        dq[rng.integers(0, shape[0], 300), rng.integers(0, shape[1], 300)] = 1          # DO_NOT_USE
        m = datamodels.ImageModel(data=data.astype(">f4") if big_endian else data, dq=dq)
        m.meta.filename = f"m{k}_cal.fits"
        m.meta.wcs = _tan_wcs(80.0 + 0.0009 * k, -69.5 + 0.0006 * (k % 2), shape, rot=0.3 * k)
        models.append(m)
    return models


def _stcal_skies(models, groups, params):
    """stcal's skymatch as jwst's step drives it: SkyStats, gwcs's invert and its Polygon.scan."""
    from stcal.skymatch import SkyGroup, SkyImage, SkyStats, skymatch

    stats = SkyStats(skystat=params["skystat"], lower=params["lower"], upper=params["upper"], nclip=params["nclip"],
                     lsig=params["lsigma"], usig=params["usigma"], binwidth=params["binwidth"])
    images, flat = [], []
    for gid, inds in enumerate(groups):
        sky = []
        for i in inds:
            m = models[i]
            good = np.isfinite(m.data) & ((m.dq & 1) == 0)
            im = SkyImage(image=m.data.copy(), mask=good, wcs_fwd=m.meta.wcs.__call__, wcs_inv=m.meta.wcs.invert,
                          skystat=stats, sky_id=m.meta.filename, stepsize=params["stepsize"], meta={"index": i})
            sky.append(im)
            flat.append(im)
        images.extend(sky) if len(sky) == 1 else images.append(SkyGroup(sky, sky_id=gid))
    skymatch(images, skymethod=params["skymethod"], match_down=params["match_down"], subtract=params["subtract"])
    return {im.meta["index"]: (im.sky if im.is_sky_valid else None, im.image) for im in flat}


@pytest.mark.parametrize(("seed", "groups", "method", "subtract", "big_endian"), [
    (0, [[0], [1], [2], [3]], "match", False, True),
    (1, [[0, 1], [2], [3]], "global+match", True, False),
    (2, [[0], [1], [2], [3]], "local", False, False),
    (3, [[0], [1], [2, 3]], "match", True, True),
])
def test_match_sky_equals_stcal_with_gwcs(seed, groups, method, subtract, big_endian):
    """The whole step's sky levels (and subtracted SCI) equal stcal's driven as jwst drives it, bit for bit."""
    from calib.steps.skymatch import STEP, match_sky

    params = {p.name: p.default for p in STEP.params} | {"skymethod": method, "subtract": subtract}
    models = _members(seed, big_endian=big_endian)
    theirs = _stcal_skies(models, groups, params)
    status = match_sky(models, groups, params)
    assert status == ["COMPLETE"] * len(models)
    levels = [m.meta.background.level for m in models]
    assert len(set(levels)) > 1 or method == "local"
    for i, m in enumerate(models):
        assert m.meta.background.level == theirs[i][0], i
        np.testing.assert_array_equal(m.data, theirs[i][1])


def test_inverse_equals_gwcs_invert():
    """The once-built inverse transform gives gwcs's ``invert`` values, bit for bit."""
    from calib.steps.skymatch import _inverse

    w = _tan_wcs(80.0, -69.5, (100, 120), rot=0.2)
    ra, dec = w(np.array([-0.5, 60.2, 119.5, 500.0]), np.array([-0.5, 30.7, 99.5, -40.0]), with_bounding_box=False)
    for bb in (False, True):
        ours, theirs = _inverse(w)(ra, dec, with_bounding_box=bb), w.invert(ra, dec, with_bounding_box=bb)
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("seed", range(4))
def test_overlap_values_equal_stcal_selection(seed):
    """The gathered overlap values equal ``image[scan & good]`` with gwcs's own scan (one or two polygons)."""
    from gwcs import region

    from calib.steps.skymatch import overlap_values

    rng = np.random.default_rng(seed)
    shape = (120, 170)
    image = rng.normal(0, 1, shape).astype(np.float32)
    good = rng.uniform(size=shape) > 0.1
    for k in range(25):
        polys = []
        for _ in range(1 + (k % 4 == 3)):
            cx, cy, r = rng.uniform(-40, 210), rng.uniform(-40, 160), rng.uniform(3, 120)
            ang = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            pts = [(cx + r * np.cos(t), cy + r * np.sin(t)) for t in ang]
            polys.append(region.Polygon(True, [*pts, pts[0]]))
        fill = np.zeros(shape, bool)
        for p in polys:
            fill = p.scan(fill)                         # gwcs's own fill, as stcal
        want = image[fill & good]
        for img in (image, image.astype(">f4"), image.astype(np.float64)):
            got = overlap_values(img, good, polys)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want.astype(np.float32))
