"""Which products a new CRDS context (or new software) makes stale, exactly and fast.

A context change A -> B can only change an exposure's best reference for the
(instrument, reftype) pairs whose rmaps differ between A and B; crds compares the
mappings (:func:`archive.crds.cache.context_reftypes_diff`). For those pairs:

1. Candidates are narrowed in SQL. When both rmaps are Match/UseAfter tables with the same
   match tuples, an exposure can only be affected if its winning match tuple changed, so
   its product must have used one of the old files listed under a changed tuple; the
   products are selected by that file set (``product_references``). Otherwise (tuples
   added or removed, another selector, a reftype that appears or disappears) every
   current product of the instrument is a candidate.
2. Each candidate's best reference under B is asked of crds itself
   (:class:`RmapSelector`: the loaded rmap's ``get_best_ref`` on the exposure's stored
   keywords, memoised on the values of the rmap's parkeys), and compared with the
   reference the product was made with. Only real differences make a product stale.

The selection rules are crds's own; this module only avoids asking crds about exposures
that cannot have changed, and avoids crds.getrecommendations' per-call set-up (about
25 ms per header here), which would take the better part of an hour for 100,000
exposures.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog.models import Exposure, Job, Product, ProductReference, ReferenceFile
from ..crds import cache as crdscache
from ..ingest.headers import HEADER_COLUMNS, INT_COLUMNS

CHUNK = 5000


@dataclass
class StaleExposure:
    """One exposure whose current products a change makes stale."""

    exposure_id: int
    product_ids: list[int]
    changes: list[dict]  # [{"reftype": r, "old": name, "new": name}]
    first_step: str | None
    stage: int = 1
    """1: the exposure's stage-1 products are stale; 2: only the listed stage-2 products."""


@dataclass
class StaleSet:
    """The outcome of comparing two contexts over the catalog."""

    changed_reftypes: dict[str, list[str]]  # instrument -> reftypes whose rmaps differ
    exposures: list[StaleExposure] = field(default_factory=list)
    candidates: int = 0  # exposures asked of crds
    crds_calls: int = 0  # distinct parkey tuples asked

    def by_change(self) -> dict[str, int]:
        """"instrument reftype old -> new": number of exposures."""
        out: dict[str, int] = defaultdict(int)
        for e in self.exposures:
            for c in e.changes:
                out[f"{c.get('instrument', '')} {c['reftype']} {c['old']} -> {c['new']}".strip()] += 1
        return dict(sorted(out.items()))


class RmapSelector:
    """Best references of one (context, instrument, reftype) by crds's loaded rmap.

    ``best(header)`` takes the FITS keywords of an exposure (primary and SCI header, as
    stored in ``exposures.header``) and returns the file name or "N/A". The keywords are
    translated to the rmap's parkeys (META.*) with crds's own JWST keyword table, and
    answers are memoised on the parkey values (dates by USEAFTER interval, see
    ``_useafter_dates``), so exposures alike in every selection keyword cost one crds
    lookup.

    Raises
    ------
    crdscache.BestrefsError
        When crds finds no match for a header (the message names FILENAME).
    """

    _fits_to_meta: dict[str, str | None] = {}
    DATE_KEYS = ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")

    def __init__(self, context: str, instrument: str, reftype: str) -> None:
        import crds

        self.context, self.instrument, self.reftype = context, instrument.lower(), reftype.lower()
        pmap = crds.get_cached_mapping(context)
        try:
            imap = pmap.get_imap(self.instrument)
            self.rmap = imap.get_rmap(self.reftype)
        except Exception:  # crds.core.exceptions.CrdsUnknownReftypeError, IrrelevantReferenceTypeError ...
            self.rmap = None
        self.parkeys = tuple(self.rmap.get_required_parkeys()) if self.rmap is not None else ()
        self._memo: dict[tuple, str] = {}
        self._seen: set[str] = set()
        self._relevant: dict[str, str] = {}  # FITS keyword -> parkey, for this rmap's parkeys
        self._useafter = self._useafter_dates()
        self.calls = 0

    def _useafter_dates(self) -> list[str] | None:
        """Every USEAFTER date of a Match/UseAfter rmap, sorted ("YYYY-MM-DD HH:MM:SS").

        Two exposures alike in every non-date parkey whose DATE-OBS/TIME-OBS fall between
        the same two consecutive dates get the same answer from every UseAfter table of
        the rmap, so crds is asked once per such interval rather than once per exposure.
        None (ask per exposure) for any other selector structure.
        """
        if self.rmap is None or not all(k in self.parkeys for k in self.DATE_KEYS):
            return None
        try:
            _, sel = crdscache._parse_mapping(crdscache._mapping_dir(crdscache._cache_path()) / self.rmap.name)
        except Exception:
            return None
        dates: set[str] = set()
        for value in sel.values():
            if isinstance(value, dict):
                dates.update(str(d) for d in value)
            elif not isinstance(value, str):
                return None
        return sorted(dates)

    @classmethod
    def _meta(cls, key: str) -> str | None:
        """Return the META.* parkey of FITS keyword ``key`` in the JWST data model schema crds uses.

        What ``crds.jwst.locate.cached_dm_find_fits_keyword`` answers, collected for every
        keyword in one walk of the schema instead of one walk per keyword.
        """
        if not cls._fits_to_meta:
            from crds.jwst import locate
            from stdatamodels.schema import walk_schema

            locate.get_datamodels()
            found: dict[str, list[str]] = defaultdict(list)

            def collect(subschema, path, combiner, ctx, recurse):
                if len(path) and path[0] == "extra_fits":
                    return True
                kw = subschema.get("fits_keyword") if isinstance(subschema, dict) else None
                if kw:
                    found[str(kw).upper()].append(".".join(path).upper())

            walk_schema(locate.MODEL.schema, collect, None)
            cls._fits_to_meta.update({k: v[0] if len(v) == 1 else None for k, v in found.items()})
            cls._fits_to_meta[""] = None  # walked
        return cls._fits_to_meta.get(key.upper())

    def fits_keywords(self) -> list[str]:
        """Every FITS keyword that feeds one of this rmap's parkeys (from the schema)."""
        self._meta("DETECTOR")  # make sure the schema table is built
        return sorted(k for k, m in self._fits_to_meta.items() if k and m in self.parkeys)

    def best(self, header: dict) -> str:
        """Return the best reference for an exposure's stored keywords, or "N/A".

        Parameters
        ----------
        header : dict
            FITS keyword -> value (``exposures.header``, or the rmap's keywords of it).

        Returns
        -------
        str
            The reference file name, or "N/A" when the rmap says it does not apply.

        Raises
        ------
        archive.crds.cache.BestrefsError
            When crds finds no match.
        """
        if self.rmap is None:
            return "N/A"
        new_keys = header.keys() - self._seen
        for key in new_keys:
            meta = key.upper() if key.upper().startswith("META.") else self._meta(key)
            if meta in self.parkeys:
                self._relevant[key] = meta
        self._seen.update(new_keys)
        values: dict[str, str] = {}
        for key, meta in self._relevant.items():
            if key in header and meta not in values:
                values[meta] = str(header[key])
        full = tuple(values.get(p, "UNDEFINED") for p in self.parkeys)
        if self._useafter is not None:
            when = f"{values.get(self.DATE_KEYS[0], '')} {values.get(self.DATE_KEYS[1], '')}".strip()
            key = tuple(v for p, v in zip(self.parkeys, full, strict=True) if p not in self.DATE_KEYS) + \
                (bisect_right(self._useafter, when),)
        else:
            key = full
        got = self._memo.get(key)
        if got is None:
            self.calls += 1
            try:
                got = str(self.rmap.get_best_ref(dict(zip(self.parkeys, full, strict=True))))
            except Exception as exc:
                got = f"NOT FOUND {exc}"
            self._memo[key] = got
        if got.upper().startswith("NOT FOUND"):
            if "N/A" in got.upper():
                return "N/A"
            raise crdscache.BestrefsError(f"{header.get('FILENAME', '<no FILENAME>')}: {self.reftype} under "
                                          f"{self.context}: {got}")
        return got


def _changed_tuple_files(old_ctx: str, new_ctx: str, instrument: str, reftype: str) -> set[str] | None:
    """Return the old reference files listed under the match tuples whose UseAfter tables differ.

    None when the change is not a same-tuples Match/UseAfter edit: then every product of
    the instrument is a candidate.
    """
    import crds

    try:
        old_rmap = crds.get_cached_mapping(old_ctx).get_imap(instrument).get_rmap(reftype)
        new_rmap = crds.get_cached_mapping(new_ctx).get_imap(instrument).get_rmap(reftype)
        mdir = crdscache._mapping_dir(crdscache._cache_path())
        _, old_sel = crdscache._parse_mapping(mdir / old_rmap.name)
        _, new_sel = crdscache._parse_mapping(mdir / new_rmap.name)
    except Exception:
        return None
    if not (isinstance(old_sel, dict) and isinstance(new_sel, dict)) or set(old_sel) != set(new_sel):
        return None
    files: set[str] = set()
    for match, old_ua in old_sel.items():
        new_ua = new_sel[match]
        if old_ua == new_ua:
            continue
        if not isinstance(old_ua, dict):
            return None
        files.update(str(v) for v in old_ua.values())
    return files


def _keyword_column(keyword: str):
    """Return a FITS keyword of the stored header as a SELECT column.

    The catalog's own string column when it has one (same value, no JSON work), else the
    header's JSON element.
    """
    for column, kw in HEADER_COLUMNS.items():
        if kw == keyword and column not in INT_COLUMNS and column != "expstart":
            return getattr(Exposure, column)
    return Exposure.header[keyword]


def first_step(pipeline: str, header: dict, reftypes) -> str | None:
    """Return the first step of ``pipeline`` (run order) that reads one of ``reftypes``, or None.

    The steps and the reftypes each reads for this exposure come from calib's declarations
    (``calib.pipelines.step_order``): e.g. a new superbias for a near-IR exposure restarts at
    saturation, which reads it before the superbias step does.

    Parameters
    ----------
    pipeline : str
        The pipeline that made the product (``calwebb_detector1``).
    header : dict
        FITS keywords of the exposure (at least INSTRUME; DETECTOR where steps depend on it).
    reftypes : iterable of str
        The reftypes whose references change.
    """
    from calib.pipelines import step_order

    wanted = set(reftypes)
    for step, reads in step_order(pipeline, header):
        if wanted & set(reads):
            return step
    return None


def compute_stale_set(session: Session, old_ctx: str, new_ctx: str, *, pipeline: str = "calwebb_detector1") -> StaleSet:
    """Find the current, not-yet-stale products whose references differ under ``new_ctx``.

    Both contexts must be in the configured CRDS cache (:func:`crdscache.configure`).
    Products of exposures whose best references do not change are not listed (and must
    be left alone by the caller).

    Raises
    ------
    crdscache.BestrefsError
        If crds cannot select for a candidate's header.
    """
    from calib.errors import InputError
    from calib.pipelines import get_pipeline, required_reftypes
    from calib.step import ExposureKeys

    spec = get_pipeline(pipeline)
    diff = crdscache.context_reftypes_diff(old_ctx, new_ctx)
    by_instr: dict[str, set[str]] = defaultdict(set)
    for instr, reftype in diff:
        by_instr[instr].add(reftype)
    result = StaleSet({i: sorted(r) for i, r in sorted(by_instr.items())})
    found: dict[int, StaleExposure] = {}
    detectors: dict[int, str] = {}
    for instr, reftypes in sorted(by_instr.items()):
        try:   # every reftype a step of this instrument's flavour may read (calib's declarations)
            used = {rt for st in spec.flavours(ExposureKeys(instr.upper())) if st.implemented for rt in st.reftypes}
        except InputError:
            continue  # an instrument this pipeline does not calibrate
        reads_memo: dict[tuple, set[str]] = {}

        def reads(param_hash: str, detector: str | None, _instr=instr, reads_memo=reads_memo) -> set[str]:
            """Return the reftypes a job with these parameters read for this detector (memoised)."""
            key = (param_hash, detector)
            if key not in reads_memo:
                params = session.execute(select(Job.parameters).where(Job.param_hash == param_hash)
                                         .limit(1)).scalar()
                reads_memo[key] = set(required_reftypes(pipeline, {"INSTRUME": _instr.upper(),
                                                                   "DETECTOR": detector or ""}, params or {}))
            return reads_memo[key]
        for reftype in sorted(reftypes & used):
            selector = RmapSelector(new_ctx, instr, reftype)
            files = _changed_tuple_files(old_ctx, new_ctx, instr, reftype)
            keys = selector.fits_keywords() + ["FILENAME"]  # only what the rmap reads
            # one set-based query: candidate products, the reference each was made with
            # (NULL: none recorded, i.e. N/A), and the exposure's selection keywords as
            # JSON elements decoded by the driver
            pref = ProductReference.__table__.alias("pref")
            rfile = ReferenceFile.__table__.alias("rfile")
            q = (select(Product.id, Product.exposure_id, rfile.c.name, Job.param_hash, Exposure.detector,
                        *[_keyword_column(k) for k in keys])
                 .join(Exposure, Exposure.id == Product.exposure_id)
                 .join(Job, Job.id == Product.job_id)
                 .where(Exposure.instrume == instr.upper(), Product.is_current.is_(True),
                        Product.stale_campaign_id.is_(None), Job.pipeline == pipeline))
            if files is not None:
                if not files:
                    continue
                q = (q.join(pref, (pref.c.product_id == Product.id) & (pref.c.reftype == reftype))
                     .join(rfile, rfile.c.id == pref.c.reference_file_id)
                     .where(rfile.c.name.in_(sorted(files))))
            else:
                q = (q.outerjoin(pref, (pref.c.product_id == Product.id) & (pref.c.reftype == reftype))
                     .outerjoin(rfile, rfile.c.id == pref.c.reference_file_id))
            seen: set[int] = set()
            for pid, eid, old, phash, detector, *values in session.execute(q):
                item = found.get(eid)
                if eid in seen:  # another product of the same exposure (rateints)
                    if item is not None and item.changes[-1]["reftype"] == reftype and pid not in item.product_ids:
                        item.product_ids.append(pid)
                    continue
                seen.add(eid)
                if reftype not in reads(phash, detector):
                    continue  # its job's steps do not read this reftype (e.g. a step it skipped)
                detectors[eid] = detector or ""
                header = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
                old = old or "N/A"
                new = selector.best(header)
                if new == old:
                    continue
                if item is None:
                    item = found[eid] = StaleExposure(eid, [], [], None)
                if pid not in item.product_ids:
                    item.product_ids.append(pid)
                item.changes.append({"instrument": instr, "reftype": reftype, "old": old, "new": new})
            result.candidates += len(seen)
            result.crds_calls += selector.calls
    for item in found.values():
        item.product_ids.sort()
        instr = item.changes[0]["instrument"]
        item.first_step = first_step(pipeline, {"INSTRUME": instr.upper(), "DETECTOR": detectors[item.exposure_id]},
                                     [c["reftype"] for c in item.changes])
    result.exposures = [found[e] for e in sorted(found)]
    return result


def compute_graph_stale(session: Session, old_ctx: str, new_ctx: str, skip_exposures: set[int]) -> list[StaleExposure]:
    """Find the current stage-2 and stage-3 products whose own references differ under ``new_ctx``.

    A stage-2 product (made by a Level-2 association's job: cal, i2d ...) records the
    references its pipeline read (its R_* keywords, ``product_references``); so does a
    stage-3 product (i2d, cat ... of a Level-3 association: e.g. source_catalog's apcorr),
    whose references are selected with its first science member's keywords. For each
    (instrument, reftype) whose rmaps differ, the products that used a reference of that
    type are asked crds's best reference under ``new_ctx`` for their exposure's keywords
    (:class:`RmapSelector`); only real differences count. Products that recorded no
    reference of that type (it was N/A for them) are candidates too when their job's
    pipeline reads the type (:func:`stage2_reads`): a context that gives them a file
    (N/A -> file) makes them stale as well. Exposures in ``skip_exposures`` (their
    stage-1 product is stale already: everything downstream is remade anyway) are left
    out. Stage-3 products follow through the lineage (:func:`downstream_products`).

    Returns
    -------
    list of StaleExposure
        One per exposure, with the stage-2 product ids and the changes (first_step None:
        the stage-2 pipeline starts again from the current stage-1 product).

    Raises
    ------
    crdscache.BestrefsError
        If crds cannot select for a candidate's header.
    """
    from sqlalchemy import exists, func

    from ..catalog.models import AssociationMember

    diff = crdscache.context_reftypes_diff(old_ctx, new_ctx)
    found: dict[int, StaleExposure] = {}
    # the exposure whose keywords select a product's references: its own, or for an
    # association's own product (a stage-3 i2d, cat ...) its first science member's, the
    # header jwst's pipeline selects references with
    first_science = (select(func.min(AssociationMember.exposure_id))
                     .where(AssociationMember.association_id == Product.association_id,
                            func.lower(AssociationMember.exptype) == "science")
                     .correlate(Product).scalar_subquery())
    selecting = func.coalesce(Product.exposure_id, first_science)
    reads_memo: dict[tuple, frozenset[str]] = {}

    def note(pid: int, eid: int, instr: str, reftype: str, old: str, new: str) -> None:
        item = found.setdefault(eid, StaleExposure(eid, [], [], None, stage=2))
        if pid not in item.product_ids:
            item.product_ids.append(pid)
        change = {"instrument": instr, "reftype": reftype, "old": old, "new": new}
        if change not in item.changes:
            item.changes.append(change)

    for instr, reftype in sorted(diff):
        selector = None
        q = (select(Product.id, Exposure.id, ReferenceFile.name, Exposure.header).select_from(Product)
             .join(ProductReference, ProductReference.product_id == Product.id)
             .join(ReferenceFile, ReferenceFile.id == ProductReference.reference_file_id)
             .join(Exposure, Exposure.id == selecting)
             .where(Product.is_current.is_(True), Product.stale_campaign_id.is_(None),
                    Product.association_id.is_not(None), ProductReference.reftype == reftype,
                    Exposure.instrume == instr.upper()))
        for pid, eid, old, header in session.execute(q):
            if eid in skip_exposures:
                continue
            selector = selector or RmapSelector(new_ctx, instr, reftype)
            new = selector.best(_selection_keywords(header))
            if new != old:
                note(pid, eid, instr, reftype, old, new)
        # N/A -> file: the products whose job recorded no reference of this type on any of
        # its products (an output that carries fewer R_* keywords than its siblings is not N/A)
        sibling = Product.__table__.alias("sibling")
        recorded = (exists().where(ProductReference.product_id == sibling.c.id, sibling.c.job_id == Product.job_id,
                                   ProductReference.reftype == reftype))
        q = (select(Product.id, Exposure.id, Exposure.header, Job.pipeline, Job.engine, Job.param_hash,
                    Job.parameters).select_from(Product)
             .join(Exposure, Exposure.id == selecting)
             .join(Job, Job.id == Product.job_id)
             .where(Product.is_current.is_(True), Product.stale_campaign_id.is_(None),
                    Product.association_id.is_not(None), Exposure.instrume == instr.upper(), ~recorded))
        for pid, eid, header, pipeline, engine, phash, params in session.execute(q):
            if eid in skip_exposures:
                continue
            keywords = _selection_keywords(header)
            key = (pipeline, engine, phash, keywords.get("DETECTOR"), keywords.get("EXP_TYPE"))
            if key not in reads_memo:
                reads_memo[key] = stage2_reads(pipeline, engine, keywords, params or {})
            if reftype not in reads_memo[key]:
                continue
            selector = selector or RmapSelector(new_ctx, instr, reftype)
            new = selector.best(keywords)
            if new != "N/A":
                note(pid, eid, instr, reftype, "N/A", new)
    for item in found.values():
        item.product_ids.sort()
    return [found[e] for e in sorted(found)]


def _selection_keywords(header: dict | None) -> dict:
    """Return an exposure's stored header without the catalog's private (``_``) entries."""
    return {k: v for k, v in (header or {}).items() if not k.startswith("_")}


def stage2_reads(pipeline: str, engine: str, header: dict, params: dict) -> frozenset[str]:
    """Return the reftypes a stage-2/3 job of ``pipeline`` reads for an exposure.

    Native jobs (engine ``calib``) read what the pipeline's declared steps that run need
    (:func:`calib.pipelines.required_reftypes` with the job's parameters); jobs of the jwst
    engine read what jwst's pipeline prefetches
    (:func:`archive.execution.jwst_engine.prefetch_reftypes`, asked of jwst).

    Parameters
    ----------
    pipeline : str
        ``calwebb_image2`` ...
    engine : str
        ``calib`` or ``jwst``.
    header : dict
        The exposure's selection keywords (INSTRUME, DETECTOR, EXP_TYPE ...).
    params : dict
        The job's ``{step: {parameter: value}}``.

    Returns
    -------
    frozenset of str
        Lower-case reftypes; empty when neither engine knows the pipeline.
    """
    from calib.errors import CalibError

    if engine == "calib":
        from calib.pipelines import required_reftypes

        try:
            return frozenset(required_reftypes(pipeline, header, params))
        except (CalibError, KeyError, ValueError):
            return frozenset()
    from ..execution.jwst_engine import JwstEngineError, prefetch_reftypes

    try:
        return frozenset(prefetch_reftypes(pipeline))
    except JwstEngineError:
        return frozenset()


def downstream_products(session: Session, product_ids: list[int]) -> list[int]:
    """Return the current products made, at any depth, from ``product_ids`` (the ``product_lineage`` view)."""
    from sqlalchemy import text

    out: set[int] = set()
    for start in range(0, len(product_ids), CHUNK):
        chunk = product_ids[start:start + CHUNK]
        rows = session.execute(text(
            "SELECT DISTINCT l.product_id FROM product_lineage l JOIN products p ON p.id = l.product_id "
            f"WHERE p.is_current AND l.input_product_id IN ({','.join(str(int(i)) for i in chunk)})"))
        out.update(r[0] for r in rows)
    return sorted(out - set(product_ids))
