"""`archive crds add / use / status` tried as a hostile or careless operator would (issue 11,
item 6): names are checked with crds' own rules, the whole closure before any copy, a failed
add leaves neither files nor a catalog row, references go where crds locates them."""
from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from archive.catalog.db import session_scope
from archive.catalog.models import CrdsContext
from archive.cli import app
from archive.crds import cache as crdscache
from archive.ingest.pools import pool_rows

from .conftest import shared


def _files(root):
    """Mapping and reference files of a cache (its config/ layout is not a copied file)."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).parts[0] != "config")


def _cli(settings, *args):
    return CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), *args])


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("ARCHIVE_DB_URL", settings.db_url)
    monkeypatch.setenv("CRDS_PATH", str(settings.crds_path))
    monkeypatch.delenv("CRDS_CONTEXT", raising=False)
    return settings


@pytest.mark.parametrize("name", ["../evil.pmap", "../../crds/jwst_0541.pmap", "a/jwst_0541.pmap", "jwst_0541.imap",
                                  "jwst_0541.pmap;rm -rf x", "jwst_0541", ".pmap", "..", "jwst_0541.fits"])
def test_bad_context_names_are_refused_before_anything(cli_env, name):
    s = cli_env
    before = _files(s.crds_path)
    res = _cli(s, "crds", "add", name, "--from", str(shared("crds", "mappings")))
    assert res.exit_code == 2, res.output
    assert _files(s.crds_path) == before
    assert not _files(s.data_dir.parent / "crds-escape")
    with session_scope(s.db_url) as db:
        assert db.execute(select(CrdsContext)).first() is None


def test_incomplete_or_conflicting_closure_copies_nothing(cli_env, tmp_path):
    s = cli_env
    src = tmp_path / "src"
    shutil.copytree(shared("crds", "mappings"), src)
    victims = sorted(src.glob("jwst_nircam_*.rmap"))
    victims[-1].unlink()  # one mapping of the closure missing: found before any copy
    before = _files(s.crds_path)
    res = _cli(s, "crds", "add", "jwst_0541.pmap", "--from", str(src))
    assert res.exit_code == 2 and "not in" in res.output
    assert _files(s.crds_path) == before
    # the whole closure in, then the same name with other content: refused, nothing copied
    shutil.copy(shared("crds", "mappings", victims[-1].name), victims[-1])
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(src / victims[0].name, first / victims[0].name)
    (s.crds_path / "mappings" / "jwst").mkdir(parents=True, exist_ok=True)
    (s.crds_path / "mappings" / "jwst" / victims[0].name).write_text(victims[0].read_text() + "\n# edited\n")
    before = _files(s.crds_path)
    res = _cli(s, "crds", "add", "jwst_0541.pmap", "--from", str(src))
    assert res.exit_code == 2 and "other content" in res.output
    assert _files(s.crds_path) == before
    with session_scope(s.db_url) as db:
        assert db.execute(select(CrdsContext)).first() is None
    # a complete, consistent closure registers the context
    (s.crds_path / "mappings" / "jwst" / victims[0].name).unlink()
    res = _cli(s, "crds", "add", "jwst_0541.pmap", "--from", str(src))
    assert res.exit_code == 0, res.output
    with session_scope(s.db_url) as db:
        assert db.execute(select(CrdsContext.name)).scalars().all() == ["jwst_0541.pmap"]


def test_status_does_not_call_a_context_in_use_that_the_cache_lacks(cli_env):
    s = cli_env
    with session_scope(s.db_url) as db:
        db.add(CrdsContext(name="jwst_0541.pmap", in_use=True))
    res = _cli(s, "crds", "status", "--json")
    assert res.exit_code == 0, res.output
    assert '"in use": "yes"' not in res.stdout and "not in the cache" in res.stdout
    assert _cli(s, "crds", "use", "../jwst_0541.pmap").exit_code == 2
    assert _cli(s, "crds", "use", "jwst_0541.pmap").exit_code == 2  # not in the cache


def test_synthetic_references_from_a_flat_directory_go_where_crds_locates_them(tmp_path):
    """jwst_sim_* references given --from a flat directory land under references/jwst/<instrument>/
    (crds' locate function reads the instrument from the file), where the workers find them."""
    import crds

    from simulation.pools import simulate_pool

    rows = pool_rows(shared("pools", "pool_003_image_nircam.csv"))[:1]
    rows[0]["SUBARRAY"] = "sub160"
    pool = tmp_path / "pool.csv"
    cols = list(rows[0])
    pool.write_text("|".join(cols) + "\n" + "|".join(rows[0][c] for c in cols) + "\n")
    res = simulate_pool(pool, tmp_path / "out", tmp_path / "simcrds", seed=1, ngroups=2, nints=1)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (tmp_path / "simcrds").rglob("*"):
        if f.is_file() and f.suffix in (".pmap", ".imap", ".rmap", ".fits", ".asdf"):
            shutil.copy(f, flat / f.name)
    cache = tmp_path / "crds"
    n = crdscache.add_context(cache, res.context, flat)
    assert n > 0
    refs = sorted(p for p in (cache / "references").rglob("*") if p.is_file())
    assert refs and all(p.parent == cache / "references" / "jwst" / "nircam" for p in refs), refs
    crdscache.configure(cache)
    for ref in refs:
        assert crdscache.locate(ref.name) == ref
        assert crds.locate_file(ref.name, "jwst") == str(ref)


def _tiny_references(d):
    """A FITS, an ASDF and a JSON synthetic reference (the three kinds synthetic contexts hold),
    with the properties write_synthetic_context reads; written mode 0600."""
    import json
    import os

    import asdf
    from astropy.io import fits

    d.mkdir()
    mask = d / "jwst_sim_nircam_mask_nrca1_t1.fits"
    fits.PrimaryHDU(header=fits.Header({"INSTRUME": "NIRCAM", "REFTYPE": "MASK", "DETECTOR": "NRCA1",
                                        "SUBARRAY": "FULL", "USEAFTER": "2020-01-01T00:00:00"})).writeto(mask)
    dist = d / "jwst_sim_nircam_distortion_nrca1_t1.asdf"
    asdf.AsdfFile({"meta": {"instrument": {"name": "NIRCAM", "detector": "NRCA1"}, "reftype": "distortion",
                            "exposure": {"type": "NRC_IMAGE"}, "useafter": "2020-01-01T00:00:00"}}).write_to(dist)
    x1d = d / "jwst_sim_miri_extract1d_lrs_t1.json"
    x1d.write_text(json.dumps({"meta": {"instrument": {"name": "MIRI", "detector": "MIRIMAGE"},
                                        "reftype": "extract1d", "exposure": {"type": "MIR_LRS-FIXEDSLIT"},
                                        "useafter": "2020-01-01T00:00:00"}}))
    for f in (mask, dist, x1d):
        os.chmod(f, 0o600)
    return [mask, dist, x1d]


def test_synthetic_fits_asdf_and_json_references_are_added_where_crds_locates_them(tmp_path):
    """`crds add --from` takes a synthetic context whose references are FITS, ASDF and JSON
    (jwst_sim_* names, which crds' own name rule accepts only for FITS); each lands where
    crds.locate_file looks, readable by the group (the umask, not the source's 0600)."""
    import os
    import stat

    import crds

    refs = _tiny_references(tmp_path / "refs")
    sim = tmp_path / "simcrds"
    old = os.umask(0o022)
    try:
        ctx = crdscache.write_synthetic_context(sim, refs)
        placed = sorted(p for p in (sim / "references").rglob("*") if p.is_file())
        assert [p.relative_to(sim / "references" / "jwst").parts[0] for p in placed] == ["miri", "nircam", "nircam"]
        flat = tmp_path / "flat"
        flat.mkdir()
        for f in sim.rglob("*"):
            if f.is_file() and f.parts[len(sim.parts)] in ("mappings", "references"):
                shutil.copy(f, flat / f.name)
        cache = tmp_path / "crds"
        assert crdscache.add_context(cache, ctx, flat) == len(refs) + len(list((sim / "mappings").rglob("*.*map")))
    finally:
        os.umask(old)
    crdscache.configure(cache)
    for ref in refs:
        where = crds.locate_file(ref.name, "jwst")
        assert os.path.isfile(where) and os.path.dirname(where).startswith(str(cache.resolve() / "references"))
        assert stat.S_IMODE(os.stat(where).st_mode) == 0o644, where
    for m in (cache / "mappings" / "jwst").glob("jwst_sim_*"):
        assert stat.S_IMODE(m.stat().st_mode) == 0o644


def test_derived_references_are_placed_by_crds_and_never_replaced(tmp_path):
    """derive_context places a new reference where crds locates it and refuses a reference
    whose name is in the cache with other content, or that is no CRDS reference name."""
    import crds
    from astropy.io import fits

    cache = tmp_path / "crds"
    crdscache.install_real_context(cache, shared("crds", "mappings"))
    crdscache.configure(cache)
    new_ref = tmp_path / "jwst_nircam_mask_sim0002.fits"
    fits.PrimaryHDU().writeto(new_ref)
    ctx = crdscache.derive_context(cache, "jwst_0541.pmap", {("nircam", "mask", "NRCA2"): new_ref})
    assert crds.locate_file(new_ref.name, "jwst") == str(cache.resolve() / "references" / "jwst" / "nircam"
                                                         / new_ref.name)
    assert (cache / "references" / "jwst" / "nircam" / new_ref.name).is_file()
    # the same name again with other content: refused, the cached file kept
    other = tmp_path / "other" / new_ref.name
    other.parent.mkdir()
    fits.PrimaryHDU(header=fits.Header({"X": 1})).writeto(other)
    before = _files(cache)
    with pytest.raises(ValueError, match="other content"):
        crdscache.derive_context(cache, ctx, {("nircam", "mask", "NRCA2"): other})
    assert (cache / "references" / "jwst" / "nircam" / new_ref.name).read_bytes() == new_ref.read_bytes()
    for bad in ("..fits", "evil.txt", "jwst_nircam mask.fits"):
        p = tmp_path / "bad" / bad
        p.parent.mkdir(exist_ok=True)
        fits.PrimaryHDU().writeto(p, overwrite=True)
        with pytest.raises(ValueError):
            crdscache.derive_context(cache, ctx, {("nircam", "mask", "NRCA2"): p})
    assert _files(cache) == before


def test_synthetic_contexts_build_mapping_names_from_checked_parts(tmp_path):
    """The instrument of a synthetic reference (its INSTRUME, or the caller's) becomes part of
    mapping file names: anything but a JWST instrument is refused before any file is written;
    a context name given must be a CRDS context name; install_real_context never replaces a
    mapping of the same name with other content."""
    from astropy.io import fits

    refs = tmp_path / "refs"
    refs.mkdir()
    evil = refs / "jwst_sim_nircam_mask_evil_t1.fits"
    fits.PrimaryHDU(header=fits.Header({"INSTRUME": "../../../tmp/x", "REFTYPE": "MASK", "DETECTOR": "NRCA1",
                                        "SUBARRAY": "FULL"})).writeto(evil)
    cache = tmp_path / "crds"
    with pytest.raises(ValueError, match="not a JWST instrument"):
        crdscache.write_synthetic_context(cache, [evil])
    ok = _tiny_references(tmp_path / "ok")[:1]
    for name in ("../evil.pmap", "jwst_sim_0001.imap", "a/jwst_sim_0001.pmap"):
        with pytest.raises(ValueError):
            crdscache.write_synthetic_context(cache, ok, context_name=name)
    with pytest.raises(ValueError, match="not a JWST instrument"):
        crdscache.write_synthetic_context(cache, ok, not_applicable=[("../x", "mask", {})])
    assert _files(cache) == []
    assert not list(tmp_path.glob("*.rmap")) and not (tmp_path / "tmp").exists()
    real = tmp_path / "real"
    crdscache.install_real_context(real, shared("crds", "mappings"))
    assert crdscache.install_real_context(real, shared("crds", "mappings")) == ["jwst_0541.pmap"]  # same: kept
    other = tmp_path / "other"
    shutil.copytree(shared("crds", "mappings"), other)
    (other / "jwst_0541.pmap").write_text((other / "jwst_0541.pmap").read_text() + "\n")
    with pytest.raises(ValueError, match="other content"):
        crdscache.install_real_context(real, other)
    assert (real / "mappings" / "jwst" / "jwst_0541.pmap").read_bytes() == \
        shared("crds", "mappings", "jwst_0541.pmap").read_bytes()


def test_a_failed_synthetic_context_leaves_no_reference_in_the_cache(tmp_path, monkeypatch):
    """write_synthetic_context and derive_context are all or nothing for the references they
    copy: a reference refused after others were accepted, or mappings that fail to be
    written, leave the cache as it was (no reference file that no mapping names)."""
    from astropy.io import fits

    cache = tmp_path / "crds"
    mask, dist, x1d = _tiny_references(tmp_path / "refs")
    first = crdscache.write_synthetic_context(cache, [mask])
    before = _files(cache)
    # the last of three references clashes with the cached mask's name: nothing copied
    clash = tmp_path / "clash" / mask.name
    clash.parent.mkdir()
    fits.PrimaryHDU(header=fits.Header({"INSTRUME": "NIRCAM", "REFTYPE": "MASK", "DETECTOR": "NRCA2",
                                        "SUBARRAY": "FULL"})).writeto(clash)
    with pytest.raises(ValueError, match="other content"):
        crdscache.write_synthetic_context(cache, [dist, x1d, clash])
    assert _files(cache) == before

    # the references are fine but writing the mappings fails: the copies are removed again
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(crdscache, "_write_context", broken)
    with pytest.raises(OSError, match="disk full"):
        crdscache.write_synthetic_context(cache, [dist, x1d])
    assert _files(cache) == before
    new_mask = tmp_path / "jwst_sim_nircam_mask_nrca1_t2.fits"
    fits.PrimaryHDU(header=fits.Header({"INSTRUME": "NIRCAM", "REFTYPE": "MASK", "DETECTOR": "NRCA1",
                                        "SUBARRAY": "FULL", "USEAFTER": "2021-01-01T00:00:00"})).writeto(new_mask)
    with pytest.raises(OSError, match="disk full"):
        crdscache.derive_context(cache, first, {("nircam", "mask", "NRCA1"): new_mask})
    assert _files(cache) == before
    monkeypatch.undo()
    # and the same calls succeed once nothing is in the way
    crdscache.write_synthetic_context(cache, [dist, x1d], base_pmap=first)
    assert len(_files(cache)) > len(before)
