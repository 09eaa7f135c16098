"""Paths the archive writes: validated components, kept under their root after resolving
links, stored relative to the data root (migration 0005 converts older absolute rows)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from archive.catalog.db import get_engine, session_scope, upgrade
from archive.catalog.models import Exposure, IngestRejection
from archive.catalog.paths import (
    UnsafePath,
    from_stored,
    name_component,
    program_component,
    to_stored,
    under_root,
)
from archive.ingest.batch import ingest

from .conftest import shared

FGS = "jw01019001001_gs-acq1_2022117003102_uncal.fits"


@pytest.mark.parametrize("program", ["../..", "..", "01019/..", "/etc", "123456", "", None, "1a", " 1019",
                                     "1019\x00", "٠١٠١٩"])
def test_program_must_be_one_to_five_digits(program):
    with pytest.raises(UnsafePath):
        program_component(program)


@pytest.mark.parametrize("program", ["1", "01019", "99999"])
def test_programs_accepted(program):
    assert program_component(program) == program


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x.fits", "a\\b", "x\x00.fits", "x" * 256])
def test_names_must_be_one_component(name):
    with pytest.raises(UnsafePath):
        name_component(name)


def test_under_root_follows_links(tmp_path):
    root = tmp_path / "root"
    (root / "inside").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "fine").symlink_to(root / "inside")
    assert under_root(root / "inside" / "f", root) == (root / "inside" / "f").resolve()
    assert under_root(root / "fine" / "f", root) == (root / "inside" / "f").resolve()
    for bad in (root / "escape" / "f", root / ".." / "outside" / "f", Path("/etc/passwd")):
        with pytest.raises(UnsafePath):
            under_root(bad, root)


def test_stored_paths_are_relative_and_never_leave_the_root(tmp_path):
    assert to_stored(tmp_path / "raw" / "01019" / FGS, tmp_path) == f"raw/01019/{FGS}"
    assert from_stored(f"raw/01019/{FGS}", tmp_path / "moved") == tmp_path / "moved" / "raw" / "01019" / FGS
    assert from_stored("/old/data/raw/1/x.fits", tmp_path) == Path("/old/data/raw/1/x.fits")  # legacy
    assert from_stored(None, tmp_path) is None
    for bad in (tmp_path.parent / "x", tmp_path / ".." / "x"):
        with pytest.raises(UnsafePath):
            to_stored(bad, tmp_path)
    with pytest.raises(UnsafePath):
        from_stored("raw/../../etc/passwd", tmp_path)


def test_ingest_refuses_a_storage_directory_linked_outside(settings, tmp_path):
    """raw/<program> replaced by a link out of the data tree: nothing is written through it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (settings.raw_dir / "01019").symlink_to(elsewhere)
    report = ingest(settings, [shared("raw", FGS)])
    [o] = report.outcomes
    assert o.status == "rejected" and "outside" in o.reason, o.reason
    assert list(elsewhere.iterdir()) == []
    with session_scope(settings.db_url) as s:
        assert s.execute(select(Exposure)).first() is None
        assert s.execute(select(IngestRejection.filename)).scalars().all() == [FGS]


def test_migration_0005_makes_absolute_paths_relative(db_url, tmp_path):
    upgrade(db_url, "0004")
    eng = get_engine(db_url)
    old = "/srv/old-archive/data"
    with eng.begin() as conn:
        conn.execute(text(
            "INSERT INTO exposures (filename, sha256, size_bytes, storage_path, source_path, instrume, exp_type, "
            "stage1_pipeline, header, ingested_at) VALUES (:f, :h, 1, :p, '/in/x', 'FGS', 'FGS_ACQ1', "
            "'calwebb_guider', '{}', CURRENT_TIMESTAMP)"),
            {"f": FGS, "h": "0" * 64, "p": f"{old}/raw/01019/{FGS}"})
        conn.execute(text("INSERT INTO exposures (filename, sha256, size_bytes, storage_path, source_path, instrume, "
                          "exp_type, stage1_pipeline, header, ingested_at) VALUES ('b_uncal.fits', :h, 1, "
                          "'/somewhere/else/b_uncal.fits', '/in/b', 'FGS', 'FGS_ACQ1', 'calwebb_guider', '{}', "
                          "CURRENT_TIMESTAMP)"), {"h": "1" * 64})
        conn.execute(text("INSERT INTO reference_files (name, reftype, instrument, path) VALUES "
                          "('jwst_fgs_flat_0001.fits', 'flat', 'fgs', "
                          "'/cache/crds/references/jwst/fgs/jwst_fgs_flat_0001.fits')"))
    upgrade(db_url)
    with eng.connect() as conn:
        paths = dict(conn.execute(text("SELECT filename, storage_path FROM exposures")).all())
        ref = conn.execute(text("SELECT path FROM reference_files")).scalar()
    assert paths[FGS] == f"raw/01019/{FGS}"
    assert paths["b_uncal.fits"] == "/somewhere/else/b_uncal.fits"  # another shape: left absolute, still read
    assert ref == "references/jwst/fgs/jwst_fgs_flat_0001.fits"


@pytest.mark.parametrize("product", ["../../evil", "../evil", "sub/evil", "<absolute>", "..", "a\x00b"])
def test_calibrate_refuses_an_association_product_name_that_leaves_the_output_directory(tmp_path, product):
    """`archive calibrate x_asn.json`: the association's product name is the products' file-name
    root; one that is not a plain name fails that input before anything runs or is written."""
    import json

    if product == "<absolute>":         # an absolute path outside the test's directories
        product = str(tmp_path.parent / f"evil-{tmp_path.name}")

    from typer.testing import CliRunner

    from archive.cli import app
    from archive.config import load_settings
    from archive.execution.calibrate import calibrate_files

    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    (work / "jw01_rate.fits").write_bytes(shared("raw", FGS).read_bytes())
    asn = work / "jw01_image2_asn.json"
    asn.write_text(json.dumps({"asn_type": "image2", "asn_pool": "p", "products": [
        {"name": product, "members": [{"expname": "jw01_rate.fits", "exptype": "science"}]}]}))
    before = sorted(tmp_path.rglob("*"))
    [o] = calibrate_files(load_settings(tmp_path / "data"), "calwebb_image2", [asn], work / "out", {})
    assert o.status == "failed" and "product name" in o.message, o
    r = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "calibrate", "calwebb_image2", str(asn),
                                 "--output-dir", str(work / "out")])
    assert r.exit_code == 1, r.output
    assert sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "data")) == before


def test_migration_0005_downgrade_makes_paths_absolute_again(db_url, tmp_path):
    """Upgrade then downgrade gives back the absolute paths (under the roots given to the
    downgrade); a path the upgrade left as it was stays as it is."""
    from alembic import command

    from archive.catalog.db import alembic_config, dispose_engines

    upgrade(db_url, "0004")
    eng = get_engine(db_url)
    old, crds = "/srv/old-archive/data", "/cache/crds"
    rows = {FGS: f"{old}/raw/01019/{FGS}", "b_uncal.fits": "/somewhere/else/b_uncal.fits"}
    with eng.begin() as conn:
        for name, path in rows.items():
            conn.execute(text(
                "INSERT INTO exposures (filename, sha256, size_bytes, storage_path, source_path, instrume, "
                "exp_type, stage1_pipeline, header, ingested_at) VALUES (:f, :h, 1, :p, '/in/x', 'FGS', "
                "'FGS_ACQ1', 'calwebb_guider', '{}', CURRENT_TIMESTAMP)"), {"f": name, "h": "0" * 64, "p": path})
        conn.execute(text("INSERT INTO reference_files (name, reftype, instrument, path) VALUES "
                          "('jwst_fgs_flat_0001.fits', 'flat', 'fgs', :p)"),
                     {"p": f"{crds}/references/jwst/fgs/jwst_fgs_flat_0001.fits"})
        conn.execute(text("INSERT INTO associations (asn_name, asn_id, asn_type, asn_rule, level, product_name, "
                          "content, content_sha256, storage_path, jwst_version, created_at) VALUES ('a', 'o001', "
                          "'image3', 'r', 3, 'p', '{}', :h, :p, '3.0', CURRENT_TIMESTAMP)"),
                     {"h": "2" * 64, "p": f"{old}/associations/a_asn.json"})
    upgrade(db_url)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT storage_path FROM exposures WHERE filename = :f"),
                            {"f": FGS}).scalar() == f"raw/01019/{FGS}"
    cfg = alembic_config(db_url)
    cfg.attributes.update(data_dir=old, crds_path=crds)
    dispose_engines()
    command.downgrade(cfg, "0004")
    with get_engine(db_url).connect() as conn:
        assert dict(conn.execute(text("SELECT filename, storage_path FROM exposures")).all()) == rows
        assert conn.execute(text("SELECT path FROM reference_files")).scalar() == \
            f"{crds}/references/jwst/fgs/jwst_fgs_flat_0001.fits"
        assert conn.execute(text("SELECT storage_path FROM associations")).scalar() == f"{old}/associations/a_asn.json"
        # the provenance views (0002) survived the downgrades of the later revisions
        assert conn.execute(text("SELECT count(*) FROM product_provenance")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM product_reference_provenance")).scalar() == 0
    upgrade(db_url)  # and up again
    with get_engine(db_url).connect() as conn:
        assert conn.execute(text("SELECT storage_path FROM associations")).scalar() == "associations/a_asn.json"
