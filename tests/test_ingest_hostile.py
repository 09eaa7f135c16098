"""Ingest never loses the batch: hostile files, wrong-typed and over-long keywords, FIFOs,
devices, links out of the directory, and two concurrent ingests (issue 11, item 3)."""
from __future__ import annotations

import gzip
import multiprocessing
import os
import stat

import pytest
from astropy.io import fits
from sqlalchemy import select

from archive.catalog.db import dispose_engines, session_scope
from archive.catalog.models import Exposure, IngestRejection
from archive.ingest.batch import ingest

from .conftest import shared

FGS = "jw01019001001_gs-acq1_2022117003102_uncal.fits"


def _variant(tmp_path, name, **cards):
    """The real FGS exposure with some primary-header cards set (header values, not pixels)."""
    out = tmp_path / name
    with fits.open(shared("raw", FGS)) as hdul:
        for k, v in cards.items():
            hdul[0].header[k] = v
        hdul.writeto(out, output_verify="ignore")
    return out


def _rows(settings):
    with session_scope(settings.db_url) as s:
        exps = s.execute(select(Exposure.filename, Exposure.sha256, Exposure.program)).all()
        rej = s.execute(select(IngestRejection.filename, IngestRejection.kind, IngestRejection.reason,
                               IngestRejection.attempts)).all()
    return sorted(exps), sorted(rej)


def _stored_files(settings):
    return sorted(p for p in settings.raw_dir.rglob("*") if p.is_file())


def test_wrong_typed_and_over_long_keywords_become_rejections(settings, tmp_path):
    bad = {
        "jw_nints_uncal.fits": ({"NINTS": "abc"}, "NINTS='abc'"),
        "jw_ngroups_uncal.fits": ({"NGROUPS": 2.5}, "NGROUPS=2.5"),
        "jw_subsize_uncal.fits": ({"SUBSIZE1": True}, "SUBSIZE1=True"),
        "jw_nframes_uncal.fits": ({"NFRAMES": "four"}, "NFRAMES='four'"),
        "jw_expstart_uncal.fits": ({"EXPSTART": "yesterday"}, "EXPSTART='yesterday'"),
        "jw_targname_uncal.fits": ({"TARGNAME": "T" * 65}, "65 characters long"),
        "jw_detector_uncal.fits": ({"DETECTOR": "GUIDER2-WITH-A-VERY-LONG-NAME"}, "DETECTOR="),
        "jw_exptype_uncal.fits": ({"EXP_TYPE": "X" * 40}, "EXP_TYPE="),
        "jw_program_uncal.fits": ({"PROGRAM": "../../etc"}, "PROGRAM='../../etc'"),
        "jw_program2_uncal.fits": ({"PROGRAM": "123456"}, "PROGRAM='123456'"),
        "jw_program3_uncal.fits": ({"PROGRAM": "01019/.."}, "PROGRAM="),
    }
    files = [_variant(tmp_path, name, **cards) for name, (cards, _) in bad.items()]
    good = tmp_path / FGS
    good.write_bytes(shared("raw", FGS).read_bytes())
    report = ingest(settings, [*files, good])
    by = {o.filename: o for o in report.outcomes}
    assert by[FGS].status == "ingested"
    for name, (_, reason) in bad.items():
        assert by[name].status == "rejected", (name, by[name])
        assert reason in by[name].reason, (name, by[name].reason)
    exps, rej = _rows(settings)
    assert [e[0] for e in exps] == [FGS]
    assert sorted(r[0] for r in rej) == sorted(bad)
    assert [p.name for p in _stored_files(settings)] == [FGS]  # nothing stored without its row
    assert all(p.resolve().is_relative_to(settings.raw_dir.resolve()) for p in _stored_files(settings))


def test_hostile_file_kinds_become_rejections(settings, tmp_path):
    src = shared("raw", FGS)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    gz = inbox / "jw_gz_uncal.fits"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    fifo = inbox / "jw_fifo_uncal.fits"
    os.mkfifo(fifo)
    dev = tmp_path / "jw_dev_uncal.fits"  # named on the command line: the link is followed
    dev.symlink_to("/dev/zero")
    outside = tmp_path / "elsewhere" / "secret.fits"
    outside.parent.mkdir()
    outside.write_bytes(src.read_bytes())
    link_out = inbox / "jw_linkout_uncal.fits"
    link_out.symlink_to(outside)
    unreadable = inbox / "jw_dangling_uncal.fits"  # a link to a file inside that is not there
    unreadable.symlink_to(inbox / "gone.fits")
    empty = inbox / "jw_empty_uncal.fits"
    empty.write_bytes(b"")
    data = bytearray(src.read_bytes())  # an absurd NAXIS1 in the SCI header
    at = data.index(b"NAXIS1  =", data.index(b"XTENSION"))
    card = b"NAXIS1  = %20d" % 10**12
    data[at:at + len(card)] = card
    absurd = inbox / "jw_absurd_uncal.fits"
    absurd.write_bytes(bytes(data))
    (inbox / FGS).write_bytes(src.read_bytes())

    report = ingest(settings, [inbox, dev])
    by = {o.filename: o for o in report.outcomes}
    assert by[FGS].status == "ingested"
    assert "gzip-compressed" in by[gz.name].reason
    assert "FIFO" in by[fifo.name].reason
    assert "character device" in by[dev.name].reason
    assert "outside the directory" in by[link_out.name].reason
    assert "cannot read" in by[unreadable.name].reason
    assert by[empty.name].status == "rejected"
    # 1e12 columns x 128 rows x ... uint16: the header announces that many bytes
    assert "headers announce" in by[absurd.name].reason and "3072000000" in by[absurd.name].reason
    exps, rej = _rows(settings)
    assert [e[0] for e in exps] == [FGS]
    assert [p.name for p in _stored_files(settings)] == [FGS]
    assert stat.S_IMODE(_stored_files(settings)[0].stat().st_mode) == 0o644


def _ingest_in_process(data_dir, db_url, readonly_url, crds, inbox, out):
    from archive.config import load_settings

    dispose_engines()
    s = load_settings(data_dir).with_(db_url=db_url, crds_path=crds)
    report = ingest(s, [inbox])
    out.put([(o.filename, o.status, o.reason) for o in report.outcomes])


def test_two_concurrent_ingests_equal_one(settings, tmp_path):
    """Two processes ingest the same directory at once: the catalog equals one ingest's and no
    file is falsely rejected."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = []
    for i in range(6):  # six distinct exposures (another TARGNAME each), same shape
        name = f"jw0101900100{i}_gs-acq1_2022117003102_uncal.fits"
        _variant(inbox, name, TARGNAME=f"TARGET {i}")
        names.append(name)
    (inbox / "jw_bad_uncal.fits").write_bytes(b"not FITS" * 400)
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    dispose_engines()
    procs = [ctx.Process(target=_ingest_in_process,
                         args=(settings.data_dir, settings.db_url, None, settings.crds_path, inbox, q))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for res in results:
        statuses = {f: st for f, st, _ in res}
        assert statuses["jw_bad_uncal.fits"] == "rejected"
        assert {statuses[n] for n in names} <= {"ingested", "unchanged"}, res
    # each good file ingested by exactly one of the two
    for n in names:
        assert sorted(dict((f, st) for f, st, _ in r)[n] for r in results) == ["ingested", "unchanged"]
    exps, rej = _rows(settings)
    assert sorted(e[0] for e in exps) == sorted(names)
    # the bad file's rejection recorded once, as one ingest records it, refused by both runs
    assert [(r[0], r[1], r[3]) for r in rej] == [("jw_bad_uncal.fits", "rejected", 2)]
    assert sorted(p.name for p in _stored_files(settings)) == sorted(names)

    # one ingest of the same files into a fresh archive gives the same catalog
    from archive.catalog.db import upgrade

    one = settings.with_(db_url=f"sqlite:///{tmp_path / 'one.sqlite'}", data_dir=tmp_path / "one")
    upgrade(one.db_url)
    ingest(one, [inbox])
    assert [(e[0], e[1]) for e in _rows(one)[0]] == [(e[0], e[1]) for e in exps]
    assert [r[:3] for r in _rows(one)[1]] == [r[:3] for r in rej]      # the same rejection, once


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_stored_files_follow_the_umask(settings, umask, mode):
    from archive.ingest.storage import apply_umask, current_umask

    old = current_umask()
    apply_umask(umask)
    try:
        ingest(settings, [shared("raw", FGS)])
    finally:
        apply_umask(old)
    [stored] = _stored_files(settings)
    assert stat.S_IMODE(stored.stat().st_mode) == mode


def test_a_pool_name_the_catalog_cannot_hold_is_refused_before_any_file(settings, tmp_path):
    """A pool file name over the catalog's 128 characters: a usage error naming the pool, and
    nothing is stored or catalogued (not one internal-error rejection per file)."""
    from typer.testing import CliRunner

    from archive.cli import app

    good = tmp_path / FGS
    good.write_bytes(shared("raw", FGS).read_bytes())
    pool = tmp_path / ("p" * 130 + "_pool.csv")
    pool.write_text("FILENAME|EXP_TYPE\n" + f"{FGS}|FGS_ACQ1\n")
    with pytest.raises(ValueError, match="pool file name is 139 characters long"):
        ingest(settings, [good], pool_path=pool)
    assert _rows(settings) == ([], []) and _stored_files(settings) == []
    env = {"ARCHIVE_DATA_DIR": str(settings.data_dir), "ARCHIVE_DB_URL": settings.db_url}
    r = CliRunner().invoke(app, ["ingest", str(good), "--pool", str(pool)], env=env)
    assert r.exit_code == 2 and "139 characters" in r.output, r.output
    assert _rows(settings) == ([], [])


def test_cli_ingest_of_a_directory_refuses_links_out_of_it(settings, tmp_path):
    """`archive ingest DIR` (not only the library call) keeps the directory as each file's root:
    a link out of it is a rejection, not followed; a FIFO in it does not hang; exit code 1."""
    import json

    from typer.testing import CliRunner

    from archive.cli import app

    src = shared("raw", FGS)
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "jw_secret_uncal.fits"
    outside.parent.mkdir()
    outside.write_bytes(src.read_bytes())
    (inbox / "jw_linkout_uncal.fits").symlink_to(outside)
    (inbox / "sub" / "jw_linkout2_uncal.fits").symlink_to(outside)  # found with --recursive
    (inbox / "jw_linkdir_uncal.fits").symlink_to(tmp_path / "elsewhere" / ".." / "elsewhere" / outside.name)
    os.mkfifo(inbox / "jw_fifo_uncal.fits")
    (inbox / "jw_inside_uncal.fits").symlink_to(inbox / "sub" / FGS)  # a link that stays inside: fine
    (inbox / "sub" / FGS).write_bytes(src.read_bytes())
    env = {"ARCHIVE_DATA_DIR": str(settings.data_dir), "ARCHIVE_DB_URL": settings.db_url}
    r = CliRunner().invoke(app, ["ingest", str(inbox), "--recursive", "--json"], env=env)
    assert r.exit_code == 1, r.output
    by = {o["file"]: o for o in json.loads(r.stdout)}
    for name in ("jw_linkout_uncal.fits", "jw_linkout2_uncal.fits", "jw_linkdir_uncal.fits"):
        assert by[name]["status"] == "rejected" and "outside the directory" in by[name]["reason"], by[name]
    assert "FIFO" in by["jw_fifo_uncal.fits"]["reason"]
    assert by[FGS]["status"] == "ingested" and by["jw_inside_uncal.fits"]["status"] == "ingested"
    exps, rej = _rows(settings)
    assert sorted(e[0] for e in exps) == sorted([FGS, "jw_inside_uncal.fits"])
    assert sorted(r[0] for r in rej) == sorted(["jw_linkout_uncal.fits", "jw_linkout2_uncal.fits",
                                               "jw_linkdir_uncal.fits", "jw_fifo_uncal.fits"])
    assert sorted(p.name for p in _stored_files(settings)) == sorted([FGS, "jw_inside_uncal.fits"])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_products_previews_and_associations_follow_the_umask(tmp_path, umask, mode):
    """What the archive serves from shared storage besides raw files: products (FITS, ECSV),
    their preview PNGs and association JSON are readable by the group (mkstemp's 0600 is not
    left on them)."""
    import numpy as np
    from astropy.table import Table
    from stdatamodels.jwst import datamodels as dm

    from archive.associations.generator import write_json
    from archive.ingest.storage import apply_umask, current_umask
    from calib.previews import write_previews
    from calib.products import write_atomic, write_table_atomic

    old = current_umask()
    apply_umask(umask)
    try:
        rate = tmp_path / "jw01_rate.fits"
        model = dm.ImageModel(np.arange(64, dtype=np.float32).reshape(8, 8))
        model.dq = np.zeros((8, 8), np.uint32)
        write_atomic(model, rate)
        cat = tmp_path / "jw01_cat.ecsv"
        write_table_atomic(Table({"a": [1, 2]}), cat)
        pngs = [p.path for p in write_previews(rate, "rate")]
        asn = write_json({"asn_name": "jw01019-o001_image2_00001_asn", "asn_type": "image2", "products": []},
                         tmp_path)
    finally:
        apply_umask(old)
    assert len(pngs) == 2
    for f in (rate, cat, *pngs, asn):
        assert stat.S_IMODE(os.stat(f).st_mode) == mode, f


def test_a_failure_after_storing_removes_the_file_and_the_batch_goes_on(settings, tmp_path, monkeypatch, caplog):
    """A file stored, then its catalog row fails (here: an unexpected error while the row is
    built, and on PostgreSQL a value the column refuses because the size check was bypassed):
    the stored file is removed again, the file becomes an internal-error rejection (logged with
    its traceback), and the next file is ingested."""
    import logging

    import archive.ingest.batch as batch

    files = []
    for i in range(3):
        files.append(_variant(tmp_path, f"jw0101900100{i}_gs-acq1_2022117003102_uncal.fits", TARGNAME=f"T{i}"))
    real_to_stored = batch.to_stored

    def failing_to_stored(path, root):
        if path.name == files[1].name:
            raise RuntimeError("disk went away")
        return real_to_stored(path, root)

    monkeypatch.setattr(batch, "to_stored", failing_to_stored)
    caplog.set_level(logging.ERROR, logger="archive.ingest.batch")
    report = ingest(settings, files)
    assert [o.status for o in report.outcomes] == ["ingested", "rejected", "ingested"]
    assert "internal error: RuntimeError: disk went away" in report.outcomes[1].reason
    assert any(r.exc_info for r in caplog.records)
    assert sorted(p.name for p in _stored_files(settings)) == [files[0].name, files[2].name]
    exps, rej = _rows(settings)
    assert [e[0] for e in exps] == [files[0].name, files[2].name]
    assert [r[0] for r in rej] == [files[1].name]
    monkeypatch.setattr(batch, "to_stored", real_to_stored)
    if settings.db_url.startswith("postgresql"):
        def unchecked(keywords):  # the size check bypassed: PostgreSQL refuses the value itself
            from archive.ingest.headers import HEADER_COLUMNS, INT_COLUMNS

            return {c: (int(keywords[k]) if c in INT_COLUMNS and k in keywords else keywords.get(k))
                    for c, k in HEADER_COLUMNS.items()}

        monkeypatch.setattr(batch, "header_columns", unchecked)
        monkeypatch.setattr("archive.ingest.headers.header_columns", unchecked)
        long = _variant(tmp_path, "jw01019001009_gs-acq1_2022117003102_uncal.fits", TARGNAME="L" * 68)
        [o] = ingest(settings, [long]).outcomes
        assert o.status == "rejected" and "internal error" in o.reason and "too long" in o.reason, o
        assert long.name not in [p.name for p in _stored_files(settings)]


def _exposure_table(settings):
    """Every catalogued column of every exposure but its id and time of ingest."""
    import json

    with session_scope(settings.db_url) as s:
        rows = s.execute(select(Exposure)).scalars().all()
        cols = [c.key for c in Exposure.__table__.columns if c.key not in ("id", "ingested_at")]
        return sorted(tuple(json.dumps(getattr(e, c), sort_keys=True, default=str) for c in cols) for e in rows)


def test_two_concurrent_archive_ingest_commands_equal_one(settings, tmp_path):
    """Two `archive ingest DIR` processes at once (the command, its umask setting included):
    every good file is ingested by one and unchanged for the other, only the bad file is
    rejected, and the catalog's exposures, column by column, and the stored files are those of
    one ingest into a fresh archive."""
    import json
    import subprocess
    import sys

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = [f"jw0101900100{i}_gs-acq1_2022117003102_uncal.fits" for i in range(6)]
    for i, name in enumerate(names):
        _variant(inbox, name, TARGNAME=f"TARGET {i}")
    (inbox / "jw_bad_uncal.fits").write_bytes(b"not FITS" * 400)
    env = {**os.environ, "ARCHIVE_DB_URL": settings.db_url, "ARCHIVE_UMASK": "027"}
    env.pop("ARCHIVE_CONFIG", None)
    cmd = [sys.executable, "-m", "archive.cli", "--data-dir", str(settings.data_dir), "ingest", str(inbox), "--json"]
    dispose_engines()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], outs  # the bad file: exit 1 for each
    results = [{o["file"]: o for o in json.loads(out)} for out, _ in outs]
    for res in results:
        assert res["jw_bad_uncal.fits"]["status"] == "rejected"
        assert not [o for f, o in res.items() if f != "jw_bad_uncal.fits" and o["status"] not in
                    ("ingested", "unchanged")], res
    for n in names:
        assert sorted(r[n]["status"] for r in results) == ["ingested", "unchanged"]
    exps, rej = _rows(settings)
    assert [(r[0], r[1], r[3]) for r in rej] == [("jw_bad_uncal.fits", "rejected", 2)]  # once, refused twice
    stored = _stored_files(settings)
    assert sorted(p.name for p in stored) == sorted(names)
    assert {stat.S_IMODE(p.stat().st_mode) for p in stored} == {0o640}  # ARCHIVE_UMASK=027

    from archive.catalog.db import upgrade

    one = settings.with_(db_url=f"sqlite:///{tmp_path / 'one.sqlite'}", data_dir=tmp_path / "one")
    upgrade(one.db_url)
    assert ingest(one, [inbox]).count("ingested") == len(names)
    assert _exposure_table(settings) == _exposure_table(one)
    assert sorted(p.relative_to(settings.data_dir) for p in stored) == \
        sorted(p.relative_to(one.data_dir) for p in _stored_files(one))
