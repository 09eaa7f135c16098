"""simulate -> ingest --pool -> associate gives the official associations, for every real pool.

For each pool file in ``../shared/data/pools`` the archive does what a new user does: the
simulator makes every row it can (``minimal``: headers only, NGROUPS = NINTS = 1; the
comparison is about headers and pool columns, not pixels), ``ingest --pool`` catalogues the
files with their pool rows, ``associate`` runs the jwst generator on the catalog's pool.
The result must equal what jwst's own ``asn_generate`` writes for the same pool file (run
once, in one background process, as operations run it: ``--version-id <stamp>`` for an
SDP-named pool): the same association files, each with the same content — products,
members in the same order, exptypes, everything jwst writes (the only normalisation is the
memory address jwst prints into the constraints text). Each pool runs on SQLite and on
PostgreSQL. ``pytest -s`` prints the counts.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED, shared

POOLS = sorted(p.name for p in (SHARED / "pools").glob("*.csv")) if (SHARED / "pools").is_dir() else []
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")

# asn_generate on every pool, in one interpreter (one jwst import), as the command line runs it
_ASN_GENERATE = r"""
import sys
from pathlib import Path
from jwst.associations.main import Main
from archive.associations.generator import sdp_version_id
out = Path(sys.argv[1])
for pool in sys.argv[2:]:
    d = out / Path(pool).stem
    d.mkdir(parents=True)
    version = sdp_version_id(pool)
    Main.cli(["-p", str(d), *(["--version-id", version] if version else []), pool])
"""


def _load(directory: Path) -> dict[str, dict]:
    return {f.name: json.loads(_ADDRESS.sub(">", f.read_text())) for f in sorted(directory.glob("*.json"))}


def _key(asn: dict):
    """What must agree beyond the file name: type, rule, products, members in order, exptypes."""
    return (asn["asn_type"], asn["asn_rule"],
            [(p["name"], [(m["expname"], m["exptype"]) for m in p["members"]]) for p in asn["products"]])


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """{pool name: {file name: association}} written by asn_generate (background process)."""
    shared("pools")
    out = tmp_path_factory.mktemp("asn_generate")
    proc = subprocess.Popen([sys.executable, "-c", _ASN_GENERATE, str(out),
                             *(str(SHARED / "pools" / p) for p in POOLS)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=out)
    results: dict[str, dict] = {}

    def get(pool: str) -> dict:
        if not results:
            log, _ = proc.communicate(timeout=1800)
            assert proc.returncode == 0, log[-3000:]
            for p in POOLS:
                results[p] = _load(out / Path(p).stem)
        return results[pool]

    return get


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """{pool name: SimulationResult} made on first use (minimal ramps, NGROUPS = NINTS = 1)."""
    from simulation.pools import simulate_pool

    base = tmp_path_factory.mktemp("simulated")
    cache: dict = {}

    def get(pool: str):
        if pool not in cache:
            stem = Path(pool).stem
            cache[pool] = simulate_pool(SHARED / "pools" / pool, base / stem, base / "crds", seed=0,
                                        ngroups=1, nints=1, minimal=True)
        return cache[pool]

    yield get
    shutil.rmtree(base, ignore_errors=True)       # full-frame files: ~8 MB each


@pytest.mark.parametrize("pool", POOLS)
def test_associate_equals_asn_generate(pool, settings, simulated, official):
    from archive.associations.associate import associate
    from archive.ingest.batch import ingest
    from archive.ingest.pools import pool_rows

    result = simulated(pool)
    rows = pool_rows(SHARED / "pools" / pool)
    # every real row is made; only the placeholder rows of jwst's test pools are not
    placeholders = [i for i, r in enumerate(rows) if r.get("INSTRUME", "").upper() == "INSTRUME"]
    assert [r.index for r in result.skipped] == placeholders
    assert all("INSTRUME 'INSTRUME' is not a JWST instrument" in r.reason for r in result.skipped)
    assert len(result.files) == len(rows) - len(placeholders)
    try:
        report = ingest(settings, result.files, pool_path=SHARED / "pools" / pool)
        assert report.count("ingested") == len(result.files), [o.reason for o in report.outcomes if o.reason]
        associate(settings)
        mine = _load(settings.associations_dir)
    finally:
        shutil.rmtree(settings.raw_dir, ignore_errors=True)
    theirs = official(pool)
    same_names = sorted(set(mine) & set(theirs))
    equal = [n for n in same_names if _key(mine[n]) == _key(theirs[n])]
    identical = [n for n in same_names if mine[n] == theirs[n]]
    print(f"\n{pool}: asn_generate {len(theirs)} associations, archive {len(mine)}; "
          f"compared {len(theirs)}: equal (names, products, members in order, exptypes) "
          f"{len(equal)}, identical JSON {len(identical)}, different {len(theirs) - len(equal)}")
    if theirs:
        assert len(same_names) > 0
    assert sorted(mine) == sorted(theirs)
    assert equal == same_names
    assert identical == same_names


def test_catalog_pool_keeps_pool_order_not_file_names(settings, simulated):
    """Members come in pool order: a pool whose rows are not in file-name order keeps its order."""
    from archive.associations.catalog_pool import catalog_pool_rows
    from archive.catalog.db import session_scope
    from archive.catalog.models import Exposure
    from archive.ingest.batch import ingest
    from archive.ingest.pools import pool_rows

    pool = "jw87800_20180412T163456_pool.csv"
    files = simulated(pool).files
    try:
        ingest(settings, list(reversed(files)), pool_path=SHARED / "pools" / pool)  # ingest order must not matter
    finally:
        shutil.rmtree(settings.raw_dir, ignore_errors=True)
    rows = pool_rows(SHARED / "pools" / pool)
    real = [r for r in rows if r["INSTRUME"].upper() != "INSTRUME"]
    names = [r["FILENAME"] for r in real]
    assert names != sorted(names)               # the pool is not in file-name order
    with session_scope(settings.db_url) as s:
        stored = {e.filename: e.pool_row for e in s.query(Exposure)}
    assert stored == {r["FILENAME"]: rows.index(r) for r in real}
    got, name = catalog_pool_rows(settings, "87800")
    assert name == pool
    assert [r["FILENAME"] for r in got] == names


def test_exposure_mkpool_cannot_describe_is_named_not_dropped(settings):
    """The real FGS_ACQ1 file (no pool row, no TARGNAME) cannot be a pool row for jwst's
    mkpool: associate names it with the reason and goes on."""
    from archive.associations.associate import associate
    from archive.ingest.batch import ingest

    real = shared("raw", "jw01019001001_gs-acq1_2022117003102_uncal.fits")
    assert ingest(settings, [real]).count("ingested") == 1
    report = associate(settings)
    assert report.created == []
    assert report.left_out == [(real.name, "jwst mkpool cannot make its pool row: KeyError('targname')")]
