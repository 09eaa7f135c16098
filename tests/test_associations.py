"""Tests for archive.associations.generator against the jwst `asn_generate` command on real pools."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from archive.associations import generator as A
from archive.ingest.pools import pool_rows, read_pool
from tests.conftest import SHARED, shared

POOLS_DIR = SHARED / "pools"
POOL_NAMES = [
    "pool_002_image_miri.csv",
    "pool_003_image_nircam.csv",
    "jw87800_20180412T163456_pool.csv",
]
UPPER_COLUMNS = ["INSTRUME", "DETECTOR", "EXP_TYPE", "FILTER", "PUPIL", "SUBARRAY"]


@pytest.fixture(autouse=True)
def _pools_present():
    shared("pools")          # fails (never skips) without ../shared beside the checkout

# The only normalisation applied to asn_generate's output: jwst writes the repr of a Python
# lambda into the "constraints" text ("<function ...<lambda> at 0x7f8b5e384180>"); the address
# is that of an object in the generating process and differs between any two runs, even of
# asn_generate itself. archive.associations.generator.generate removes it; so do we here. Nothing else
# is normalised: with the asn_generate default (no --version-id) there is no timestamp in
# asn_id/asn_name, asn_pool is the pool file's base name in both, code_version is the same
# installed jwst.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def _strip_address(text: str) -> str:
    return _ADDRESS.sub(">", text)


@pytest.fixture(scope="module")
def asn_generate_output(tmp_path_factory):
    """{pool name: {file name: file text}} written by the jwst asn_generate entry point.

    Run in a fresh interpreter, exactly like the command line: `asn_generate -p DIR POOL`
    (the console script is jwst.associations.main:main).
    """
    out = {}
    for name in POOL_NAMES:
        d = tmp_path_factory.mktemp(name.split(".")[0])
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from jwst.associations.main import main; main(sys.argv[1:])",
                "-p",
                str(d),
                str(POOLS_DIR / name),
            ],
            check=True,
            capture_output=True,
            cwd=d,
        )
        out[name] = {f.name: f.read_text() for f in sorted(d.glob("*.json"))}
        assert out[name], f"asn_generate wrote nothing for {name}"
    return out


@pytest.fixture(scope="module")
def generated():
    """{pool name: generate(read_pool(path))}."""
    return {name: A.generate(read_pool(POOLS_DIR / name)) for name in POOL_NAMES}


def _by_name(asns):
    return {a["asn_name"] + ".json": {k: v for k, v in a.items() if k != "asn_name"} for a in asns}


# (1) equality with asn_generate -----------------------------------------------------------


@pytest.mark.parametrize("name", POOL_NAMES)
def test_generate_equals_asn_generate(name, generated, asn_generate_output):
    ref = {
        fname: json.loads(_strip_address(text)) for fname, text in asn_generate_output[name].items()
    }
    mine = _by_name(generated[name])
    assert sorted(mine) == sorted(ref)  # same associations, same file names
    for fname in ref:
        assert mine[fname] == ref[fname], fname
        # same key order as jwst writes it
        assert list(mine[fname]) == list(ref[fname])


@pytest.mark.parametrize("name", POOL_NAMES)
def test_write_json_bytes_equal_asn_generate_files(name, generated, asn_generate_output, tmp_path):
    for asn in generated[name]:
        path = A.write_json(asn, tmp_path)
        assert path.parent == tmp_path
    written = {f.name: f.read_text() for f in tmp_path.glob("*.json")}
    expected = {f: _strip_address(t) for f, t in asn_generate_output[name].items()}
    assert written == expected
    assert not list(tmp_path.glob(".*.tmp"))


def test_generate_is_reproducible_and_leaves_pool_alone():
    pool = read_pool(POOLS_DIR / "pool_003_image_nircam.csv")
    before = [tuple(r) for r in pool]
    first = A.generate(pool)
    second = A.generate(pool)  # jwst's class-level sequence counters must not leak
    assert first == second
    assert [tuple(r) for r in pool] == before


def test_version_id_passed_through():
    pool = read_pool(POOLS_DIR / "pool_002_image_miri.csv")
    asns = A.generate(pool, "r1")
    assert asns and all(a["version_id"] == "r1" for a in asns)
    assert all("r1" in a["asn_name"] for a in asns)
    assert all(a["version_id"] is None for a in A.generate(pool))
    with pytest.raises(TypeError):
        A.generate(pool, True)


def test_rules_level_subsets(generated):
    name = "jw87800_20180412T163456_pool.csv"
    pool = read_pool(POOLS_DIR / name)
    assert A.generate(pool, rules="level2") == [a for a in generated[name] if A.asn_level(a) == 2]
    assert A.generate(pool, rules="level3") == [a for a in generated[name] if A.asn_level(a) == 3]
    with pytest.raises(ValueError):
        A.generate(pool, rules="level4")


# (2) round trip through catalog rows -------------------------------------------------------


@pytest.mark.parametrize("name", POOL_NAMES)
def test_round_trip_through_rows(name, generated):
    rows = pool_rows(POOLS_DIR / name)
    assert A.generate(A.pool_from_rows(rows, pool_name=name)) == generated[name]


def test_round_trip_without_pool_name_only_asn_pool_differs(generated):
    name = "pool_002_image_miri.csv"
    asns = A.generate(A.pool_from_rows(pool_rows(POOLS_DIR / name)))
    assert {a["asn_pool"] for a in asns} == {"in-memory"}
    strip = lambda L: [{k: v for k, v in a.items() if k != "asn_pool"} for a in L]  # noqa: E731
    assert strip(asns) == strip(generated[name])


def test_pool_from_rows_shape():
    rows = [
        {"PROGRAM": "1", "FILENAME": "a", "EXTRA": "X"},
        {"PROGRAM": "1", "FILENAME": "b", "LATE": ""},
    ]
    pool = A.pool_from_rows(rows)  # no column is required before the generator runs
    assert pool.colnames == [c.lower() for c in rows[0]] + ["late"]
    assert list(pool["extra"]) == ["x", "null"]  # lower-cased like the reader; missing -> null
    assert list(pool["late"]) == ["null", "null"]  # empty -> null, as the reader fills it
    assert pool.meta["pool_file"] == "in-memory"


def test_pool_from_rows_errors():
    rows = pool_rows(POOLS_DIR / "pool_002_image_miri.csv")
    with pytest.raises(ValueError):
        A.pool_from_rows([])
    with pytest.raises(ValueError, match="case"):
        A.pool_from_rows([{**rows[0], "exp_type": "x"}])


def test_generate_missing_column_names_it():
    """A column the jwst rules read is reported by name (the generator's own KeyError)."""
    pool = read_pool(POOLS_DIR / "pool_002_image_miri.csv")
    pool.remove_column("pntgtype")
    with pytest.raises(ValueError, match="pool_002_image_miri.csv: .* column PNTGTYPE"):
        A.generate(pool)


def test_no_column_check_stricter_than_the_generator(generated):
    """A pool without VISITYPE is one the generator accepts: so do we, with its result."""
    name = "pool_002_image_miri.csv"
    rows = [{k: v for k, v in r.items() if k != "VISITYPE"} for r in pool_rows(POOLS_DIR / name)]
    asns = A.generate(A.pool_from_rows(rows, pool_name=name))
    pool = read_pool(POOLS_DIR / name)
    pool.remove_column("visitype")
    assert asns == A.generate(pool) and len(asns) == len(generated[name])


def test_sdp_version_id_from_the_pool_name():
    assert A.sdp_version_id("jw87800_20180412T163456_pool.csv") == "20180412T163456"
    assert A.sdp_version_id("/x/jw01290_20230304t140931_pool.csv") == "20230304t140931"
    for name in ("pool_002_image_miri.csv", "jw87800_catalog_pool", None, "jw8780_20180412T163456_pool.csv"):
        assert A.sdp_version_id(name) is None


# (3) upper-cased values (the catalog stores header values upper case) ---------------------


def _raw_pool_upper(name, columns):
    """The pool file with some columns' values upper-cased, NOT lower-cased again."""
    pool = read_pool(POOLS_DIR / name)
    for col in columns:
        pool[col.lower()] = [v.upper() for v in pool[col.lower()]]
    return pool


def _without_constraints(asns):
    return [{k: v for k, v in a.items() if k != "constraints"} for a in asns]


@pytest.mark.parametrize("name", POOL_NAMES)
def test_upper_case_rows_give_same_output_via_pool_from_rows(name, generated):
    # What the catalog will do: rows with upper-case header values -> pool_from_rows.
    rows = [
        {k: (v.upper() if k in UPPER_COLUMNS else v) for k, v in r.items()}
        for r in pool_rows(POOLS_DIR / name)
    ]
    assert A.generate(A.pool_from_rows(rows, pool_name=name)) == generated[name]


def test_finding_raw_upper_case_values_change_the_output(generated):
    """Finding: the jwst generator is case sensitive on values; lower-casing is required."""
    name = "jw87800_20180412T163456_pool.csv"
    # EXP_TYPE upper case: associations are lost (12 -> fewer, the spec2 ones disappear).
    upper = A.generate(_raw_pool_upper(name, ["EXP_TYPE"]))
    assert len(upper) < len(generated[name])
    # SUBARRAY upper case: Level-3 product names change ("-full" gets appended).
    name3 = "pool_003_image_nircam.csv"
    upper = A.generate(_raw_pool_upper(name3, ["SUBARRAY"]))
    products = lambda L: [p["name"] for a in L for p in a["products"]]  # noqa: E731
    assert products(upper) != products(generated[name3])
    # All six together: different from asn_generate's output on the same pool.
    for n in POOL_NAMES:
        assert A.generate(_raw_pool_upper(n, UPPER_COLUMNS)) != generated[n]


@pytest.mark.parametrize("column", ["INSTRUME", "DETECTOR", "FILTER", "PUPIL"])
def test_finding_upper_case_instrument_fields_only_change_constraints_text(column, generated):
    # For these the associations and members are the same, but the upper-case values are
    # copied into the stored "constraints" text, so the output is still not identical.
    name = "pool_003_image_nircam.csv"
    upper = A.generate(_raw_pool_upper(name, [column]))
    assert _without_constraints(upper) == _without_constraints(generated[name])
    assert upper != generated[name]


# (4) members, asn_level, write_json --------------------------------------------------------


def test_members_and_levels(generated):
    asns = generated["pool_002_image_miri.csv"]
    levels = [A.asn_level(a) for a in asns]
    assert levels.count(3) == 1 and levels.count(2) == 8
    for a in asns:
        assert A.asn_level(a) == (2 if a["asn_type"].endswith("2") else 3)
    lv3 = next(a for a in asns if A.asn_level(a) == 3)
    mem = A.members(lv3)
    assert len(mem) == 8
    assert all(prod == lv3["products"][0]["name"] for prod, _, _ in mem)
    assert all(exp.endswith("_cal.fits") and typ == "science" for _, exp, typ in mem)
    lv2 = [a for a in asns if A.asn_level(a) == 2]
    all_lv2 = [m for a in lv2 for m in A.members(a)]
    assert {e for _, e, t in all_lv2 if t == "science"} == {
        e.replace("_cal", "_rate") for _, e, _ in mem
    }
    # level 2 of every reference pool, including spec2 and the MIRI TA confirm rule family
    for asns in generated.values():
        for a in asns:
            assert A.asn_level(a) in (2, 3)
            assert all(isinstance(x, str) for m in A.members(a) for x in m)


def test_asn_level_fallback_and_error():
    assert A.asn_level({"asn_rule": "candidate_Asn_MIRLRSTAConfirm", "asn_type": "x"}) == 2
    assert A.asn_level({"asn_rule": "unknown", "asn_type": "coron3"}) == 3
    assert A.asn_level({"asn_rule": "unknown", "asn_type": "tso-image2"}) == 2
    with pytest.raises(ValueError):
        A.asn_level({"asn_rule": "unknown", "asn_type": "user_built"})
    with pytest.raises(ValueError):
        A.members({"asn_id": "x"})


def test_write_json_atomic_and_no_overwrite(generated, tmp_path):
    asn = generated["pool_002_image_miri.csv"][-1]
    path = A.write_json(asn, tmp_path)
    assert path == tmp_path / "jw99009-o001_image3_00001_asn.json"
    text = path.read_text()
    assert json.loads(text) == {k: v for k, v in asn.items() if k != "asn_name"}
    mtime = path.stat().st_mtime_ns
    # identical content: fine, file untouched
    assert A.write_json(dict(asn), tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    # different content under the same name: refused, file unchanged
    other = json.loads(json.dumps(asn))
    other["products"][0]["members"] = other["products"][0]["members"][:1]
    with pytest.raises(FileExistsError):
        A.write_json(other, tmp_path)
    assert path.read_text() == text
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # a foreign file at the target name is not replaced either
    foreign = tmp_path / (generated["pool_002_image_miri.csv"][0]["asn_name"] + ".json")
    foreign.write_text("{}")
    with pytest.raises(FileExistsError):
        A.write_json(generated["pool_002_image_miri.csv"][0], tmp_path)
    assert foreign.read_text() == "{}"
    with pytest.raises(ValueError):
        A.write_json({k: v for k, v in asn.items() if k != "asn_name"}, tmp_path)
    with pytest.raises(FileNotFoundError):
        A.write_json(asn, tmp_path / "missing")


def test_write_json_temp_file_is_atomic(generated, tmp_path, monkeypatch):
    """The target name appears only once the content is complete (tmp then link/replace)."""
    asn = generated["pool_002_image_miri.csv"][0]
    seen = []
    real_link = os.link

    def spy(src, dst, *a, **k):
        seen.append((Path(src).name, Path(dst).exists(), Path(src).read_text()))
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(os, "link", spy)
    path = A.write_json(asn, tmp_path)
    assert len(seen) == 1
    tmp_name, existed, content = seen[0]
    assert tmp_name.startswith(".") and tmp_name.endswith(".tmp") and not existed
    assert content == path.read_text()
