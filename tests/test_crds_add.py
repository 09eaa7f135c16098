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
