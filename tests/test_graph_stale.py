"""Staleness of stage-2 products when a context gives a file where there was none (N/A -> file).

A stage-2 product records the references its job read (``product_references``); a reftype
that was N/A for its exposure leaves no row. When a new context selects a file of that type
for the exposure, the product is stale if its job's pipeline reads the type: the native
calwebb_image2 by its declared steps (a job that skipped photom does not read ``area``), a
jwst-engine job by what jwst's pipeline prefetches. Both catalogs.
"""
from __future__ import annotations

from sqlalchemy import select

HEADER = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCB1", "EXP_TYPE": "NRC_IMAGE", "FILTER": "F200W",
          "PUPIL": "CLEAR", "SUBARRAY": "FULL", "READPATT": "MEDIUM8", "DATE-OBS": "2023-06-01",
          "TIME-OBS": "00:00:00", "CHANNEL": "SHORT", "MODULE": "B"}


def _contexts(crds):
    """Two synthetic contexts for NRCB1 F200W imaging: without an AREA reference, then with one."""
    from archive.crds import cache as crdscache
    from simulation import imaging_refs

    written = imaging_refs.write_imaging_references(crds.parent / "refs", "NIRCAM", "NRCB1", [("F200W", "CLEAR")])
    refs = {rt: paths for rt, paths in written.items() if paths}
    without = crdscache.write_synthetic_context(crds, [p for rt, ps in refs.items() if rt != "area" for p in ps])
    with_area = crdscache.write_synthetic_context(crds, [p for ps in refs.values() for p in ps])
    crdscache.configure(crds)
    return without, with_area, refs


def test_a_new_area_reference_makes_the_cals_that_had_none_stale(settings):
    from archive.catalog.db import session_scope
    from archive.catalog.models import (Association, CrdsContext, Exposure, Job, Product, ProductReference,
                                        ReferenceFile)
    from archive.crds import cache as crdscache
    from archive.reprocessing.stale import compute_graph_stale

    old, new, refs = _contexts(settings.crds_path)
    assert crdscache.bestrefs(HEADER, old, ["area"])["area"] == "N/A"
    area = crdscache.bestrefs(HEADER, new, ["area"])["area"]
    assert area == refs["area"][0].name
    flat = refs["flat"][0].name
    with session_scope(settings.db_url) as db:
        ctx = CrdsContext(name=old)
        db.add(ctx)
        db.flush()
        flat_row = ReferenceFile(name=flat, reftype="flat", instrument="nircam")
        db.add(flat_row)
        made = {}
        for k, (engine, params) in enumerate([("calib", {}), ("calib", {"photom": {"skip": True}}),
                                              ("jwst", {})]):
            e = Exposure(filename=f"jw0100{k}001001_01101_00001_nrcb1_uncal.fits", sha256=f"{k}" * 64,
                         size_bytes=1, storage_path="raw/x", instrume="NIRCAM", detector="NRCB1",
                         exp_type="NRC_IMAGE", stage1_pipeline="calwebb_detector1", header=dict(HEADER))
            asn = Association(asn_name=f"jw01000-o00{k}_image2_00001_asn", asn_id=f"o00{k}", asn_type="image2",
                              asn_rule="Asn_Lv2Image", level=2, product_name=f"p{k}", content={},
                              content_sha256=f"{k}" * 64, jwst_version="3.0.0")
            db.add_all([e, asn])
            db.flush()
            job = Job(pipeline="calwebb_image2", context_id=ctx.id, cal_version="0", software_versions={},
                      parameters=params, param_hash=f"h{k}", status="succeeded", exposure_id=e.id,
                      association_id=asn.id, engine=engine)
            db.add(job)
            db.flush()
            p = Product(job_id=job.id, exposure_id=e.id, association_id=asn.id, filename=f"p{k}_cal.fits",
                        path=f"products/p{k}_cal.fits", suffix="cal", sha256="2" * 64, size_bytes=1)
            db.add(p)
            db.flush()
            db.add(ProductReference(product_id=p.id, reference_file_id=flat_row.id, reftype="flat"))
            made[(engine, bool(params))] = (e.id, p.id)
        db.flush()
        stale = compute_graph_stale(db, old, new, set())
        by_exposure = {s.exposure_id: s for s in stale}
        for key in [("calib", False), ("jwst", False)]:          # they read AREA (photom): stale
            eid, pid = made[key]
            assert by_exposure[eid].product_ids == [pid] and by_exposure[eid].stage == 2
            assert by_exposure[eid].changes == [{"instrument": "nircam", "reftype": "area", "old": "N/A",
                                                 "new": area}]
        assert made[("calib", True)][0] not in by_exposure      # photom skipped: AREA never read
        # a stage-1 product of the exposure being stale already: left to that campaign
        skip = {made[("calib", False)][0]}
        assert {s.exposure_id for s in compute_graph_stale(db, old, new, skip)} == {made[("jwst", False)][0]}
        # the reverse (file -> N/A) through the recorded reference
        area_row = ReferenceFile(name=area, reftype="area", instrument="nircam")
        db.add(area_row)
        db.flush()
        db.add(ProductReference(product_id=made[("calib", False)][1], reference_file_id=area_row.id,
                                reftype="area"))
        db.flush()
        back = {s.exposure_id: s for s in compute_graph_stale(db, new, old, set())}
        assert back[made[("calib", False)][0]].changes == [{"instrument": "nircam", "reftype": "area",
                                                            "old": area, "new": "N/A"}]
        assert set(back) == {made[("calib", False)][0]}
        assert db.scalar(select(Product.id).where(Product.stale_campaign_id.is_not(None))) is None


def test_a_new_apcorr_makes_the_catalog_of_the_mosaic_stale(settings, tmp_path):
    """A stage-3 product (the association's own: exposure None) records source_catalog's apcorr;
    its selection uses the first science member's keywords; a re-delivered apcorr makes it stale."""
    from archive.catalog.db import session_scope
    from archive.catalog.models import (Association, AssociationMember, CrdsContext, Exposure, Job, Product,
                                        ProductReference, ReferenceFile)
    from archive.crds import cache as crdscache
    from archive.reprocessing.stale import compute_graph_stale
    from simulation import imaging_refs

    _, ctx1, refs = _contexts(settings.crds_path)
    apcorr1 = refs["apcorr"][0].name
    v2 = imaging_refs.write_apcorr(tmp_path / "jwst_sim_nircam_apcorr_imaging_v2.fits", "NIRCAM")
    ctx2 = crdscache.derive_context(settings.crds_path, ctx1, {("nircam", "apcorr", "NRC_IMAGE"): v2})
    assert crdscache.bestrefs(HEADER, ctx2, ["apcorr"])["apcorr"] == v2.name != apcorr1
    with session_scope(settings.db_url) as db:
        ctx = CrdsContext(name=ctx1)
        ref = ReferenceFile(name=apcorr1, reftype="apcorr", instrument="nircam")
        asn = Association(asn_name="jw01000-o001_image3_00001_asn", asn_id="o001", asn_type="image3",
                          asn_rule="candidate_Asn_Lv3Image", level=3, product_name="jw01000-o001_t001",
                          content={}, content_sha256="9" * 64, jwst_version="3.0.0")
        db.add_all([ctx, ref, asn])
        db.flush()
        exps = []
        for k in (1, 2):
            e = Exposure(filename=f"jw01000001001_01101_0000{k}_nrcb1_uncal.fits", sha256=f"{k}" * 64,
                         size_bytes=1, storage_path="raw/x", instrume="NIRCAM", detector="NRCB1",
                         exp_type="NRC_IMAGE", stage1_pipeline="calwebb_detector1", header=dict(HEADER))
            db.add(e)
            db.flush()
            exps.append(e.id)
            db.add(AssociationMember(association_id=asn.id, product_name="jw01000-o001_t001",
                                     expname=f"x{k}_cal.fits", exptype="science", exposure_id=e.id))
        job = Job(pipeline="calwebb_image3", context_id=ctx.id, cal_version="0", software_versions={},
                  parameters={}, param_hash="h3", status="succeeded", association_id=asn.id, engine="jwst")
        db.add(job)
        db.flush()
        made = {}
        for suffix in ("i2d", "cat"):
            p = Product(job_id=job.id, exposure_id=None, association_id=asn.id, filename=f"jw01000-o001_t001_{suffix}",
                        path=f"products/{suffix}", suffix=suffix, sha256="3" * 64, size_bytes=1)
            db.add(p)
            db.flush()
            made[suffix] = p.id
        db.add(ProductReference(product_id=made["cat"], reference_file_id=ref.id, reftype="apcorr"))
        db.flush()
        stale = compute_graph_stale(db, ctx1, ctx2, set())
        assert [(s.exposure_id, s.product_ids) for s in stale] == [(min(exps), [made["cat"]])]
        assert stale[0].changes == [{"instrument": "nircam", "reftype": "apcorr", "old": apcorr1, "new": v2.name}]
        assert compute_graph_stale(db, ctx1, ctx1, set()) == []
