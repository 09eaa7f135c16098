"""Associations: run the jwst association generator on a pool and keep its result as plain data.

Association rules are STScI operational policy and change with each jwst build, so the
archive never re-implements them. It builds an association pool (a
:class:`jwst.associations.AssociationPool`, i.e. an astropy Table), calls the jwst package's
own generator with the same defaults as the ``asn_generate`` command (Level-2 rules
``jwst.associations.lib.rules_level2b`` and Level-3 rules ``rules_level3``, the per-candidate
algorithm, candidate + discovered associations, finalization, no merging, no version id),
and returns every association as a JSON-able dict in the jwst association form.

Source: jwst associations documentation ("Association Generator", ``asn_generate``,
"Level 2 / Level 3 Associations: Rules", "Association Pool") and the jwst 3.0.0 code in
``jwst/associations/main.py`` (``Main.parse_args``/``configure``/``generate``/``save``),
``generator/generate_per_candidate.py`` and ``association_io.py``.

Two facts found by running the generator (see tests/test_associations.py):

* The generator is case sensitive on pool *values*. ``AssociationPool.read`` lower-cases every
  value (and every column name) of a pool file, so ``asn_generate`` always sees lower case.
  Upper-case EXP_TYPE loses associations, upper-case SUBARRAY changes Level-3 product names,
  and upper-case INSTRUME/DETECTOR/FILTER/PUPIL end up in the stored constraints text.
  :func:`pool_from_rows` therefore lower-cases values exactly like the pool reader does.
* The ``constraints`` text jwst writes contains the ``repr`` of a Python function, with its
  memory address (``<function ... at 0x7f...>``), which changes from run to run. :func:`generate`
  removes that address (only that) so the same pool always gives the same associations.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from ..ingest.storage import current_umask

__all__ = [
    "pool_from_rows",
    "sdp_version_id",
    "generate",
    "asn_level",
    "members",
    "write_json",
]

#: What the pool reader stores for an empty / missing value (``AssociationPool.read`` fills
#: masked cells with this string).
NULL = "null"

#: ``rules`` argument of :func:`generate` -> rule files. ``"all"`` is what ``asn_generate``
#: uses by default (``lib/association_rules.py``, which loads rules_level2b and rules_level3).
_RULE_FILES = {
    "all": None,
    "level2": "rules_level2b.py",
    "level3": "rules_level3.py",
}

# ``<function AsnMixin_Science.__init__.<locals>.<lambda> at 0x7f8b5e384180>``: the address
# is that of a lambda in the running process, different in every run.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")

# Key added to each returned association: jwst's ``Association.asn_name`` (the base of the
# file name ``asn_generate`` writes). It is not part of the jwst JSON; write_json drops it.
ASN_NAME_KEY = "asn_name"


def sdp_version_id(pool_name: str | None) -> str | None:
    """Return the version id of an SDP-named pool, as operations give it to ``asn_generate``.

    The operations system names a program's pool ``jwPPPPP_<stamp>_pool.csv`` and runs
    ``asn_generate --version-id <stamp>`` on it (jwst's own regression tests on SDP pools do
    the same, ``jwst/regtest/associations_sdp_pools``); the stamp then appears in every
    association and product name. The pattern is the one jwst's Level-3 rules use to
    recognise a DMS pool name (``rules_level3_base._DMS_POOLNAME_REGEX``).

    Parameters
    ----------
    pool_name : str or None
        A pool file name or path, e.g. ``jw87800_20180412T163456_pool.csv``.

    Returns
    -------
    str or None
        The stamp (``"20180412T163456"``, case as in the name), or None for any other name.
    """
    from jwst.associations.lib.rules_level3_base import _DMS_POOLNAME_REGEX

    if not pool_name:
        return None
    match = re.fullmatch(_DMS_POOLNAME_REGEX, Path(str(pool_name)).name.split(".")[0])
    return match.group(2) if match else None


def pool_from_rows(rows: list[dict[str, str]], *, pool_name: str | None = None):
    """Build a jwst association pool from catalog rows, as ``AssociationPool.read`` would.

    Parameters
    ----------
    rows : list of dict[str, str]
        One dict per exposure, column name -> value (names case-insensitive, normally
        UPPER-CASE as :func:`archive.ingest.pools.pool_rows` gives them). A column missing from a
        row, ``None`` or an empty string becomes ``"null"`` (what the reader fills empty cells
        with). Other values are converted with ``str`` and lower-cased, because the pool
        reader lower-cases every value and the jwst rules compare values case-sensitively.
    pool_name : str, optional
        Name of the pool file the rows came from (only its base name is used). jwst copies
        it into each association's ``asn_pool``, and a DMS pool name
        (``jwPPPPP_YYYYMMDDTHHMMSS_pool``) is parsed by the Level-3 rules. Default: the jwst
        default for an in-memory pool, ``"in-memory"``.

    Returns
    -------
    jwst.associations.AssociationPool
        Columns named in lower case (as the reader names them), in order of first
        appearance over the rows; every column holds strings.

    Raises
    ------
    ValueError
        If ``rows`` is empty or two column names differ only by case. Columns are not
        checked here: which ones the rules need is the generator's business (:func:`generate`
        reports a column it missed).
    """
    from jwst.associations import AssociationPool

    if not rows:
        raise ValueError("cannot build an association pool from no rows")
    names: dict[str, str] = {}  # lower-case name -> name as given (insertion ordered)
    for row in rows:
        for key in row:
            low = str(key).lower()
            if low in names and names[low] != key:
                raise ValueError(f"pool columns {names[low]!r} and {key!r} differ only by case")
            names.setdefault(low, key)

    def cell(row, key):
        value = row.get(key)
        if value is None or value == "":
            return NULL
        return str(value).lower()

    columns = {low: [cell(row, key) for row in rows] for low, key in names.items()}
    pool = AssociationPool(columns, names=list(columns))
    pool.meta["pool_file"] = pool_name if pool_name is not None else "in-memory"
    return pool


def _options(version_id, rules):
    """Return the options ``asn_generate`` runs with by default, taken from jwst's own parser."""
    from jwst.associations import libpath
    from jwst.associations.main import Main

    if rules not in _RULE_FILES:
        raise ValueError(f"rules must be one of {sorted(_RULE_FILES)}, not {rules!r}")
    if version_id is not None and not isinstance(version_id, str):
        raise TypeError(f"version_id must be a str or None, not {type(version_id).__name__}")

    cli = Main.__new__(Main)  # only to use its argument parser (defaults of asn_generate)
    cli.parse_args([], has_pool=True)
    parsed = cli.parsed
    # Mode of operation, as in Main.configure: no --ids/--discover/--all-candidates given
    # means both candidate and discovered associations.
    if not parsed.discover and not parsed.all_candidates and parsed.asn_candidate_ids is None:
        parsed.discover = True
        parsed.all_candidates = True
    parsed.version_id = version_id  # as `--version-id VALUE` would set it
    if _RULE_FILES[rules] is not None:  # as `-r FILE --ignore-default` would set it
        parsed.rules = [str(libpath() / _RULE_FILES[rules])]
        parsed.ignore_default = True
    return parsed


def _run(pool, parsed):
    """Run the body of ``Main.generate`` (jwst 3.0.0) with already parsed options."""
    if parsed.per_pool_algorithm:
        from jwst.associations.generator.generate_per_pool import generate_per_pool

        return generate_per_pool(
            pool,
            rule_defs=parsed.rules,
            candidate_ids=parsed.asn_candidate_ids,
            all_candidates=parsed.all_candidates,
            discover=parsed.discover,
            version_id=parsed.version_id,
            finalize=not parsed.no_finalize,
            merge=parsed.merge,
            ignore_default=parsed.ignore_default,
        )
    from jwst.associations.generator.generate_per_candidate import generate_per_candidate

    return generate_per_candidate(
        pool,
        rule_defs=parsed.rules,
        candidate_ids=parsed.asn_candidate_ids,
        all_candidates=parsed.all_candidates,
        discover=parsed.discover,
        version_id=parsed.version_id,
        finalize=not parsed.no_finalize,
        merge=parsed.merge,
        ignore_default=parsed.ignore_default,
        dms_enabled=parsed.DMS_enabled,
    )


def generate(pool, version_id: str | None = None, *, rules: str = "all") -> list[dict]:
    """Generate the associations of a pool with the jwst generator, as ``asn_generate`` does.

    The options are those of ``asn_generate POOL`` (read from jwst's own argument parser):
    per-candidate algorithm (``generate_per_candidate``), default rules (Level-2
    ``rules_level2b`` + Level-3 ``rules_level3``), candidate and discovered associations,
    duplicate filtering, finalization, no merging, JSON format. Associations that jwst cannot
    serialize are skipped, as ``asn_generate`` skips them when saving.

    Parameters
    ----------
    pool : jwst.associations.AssociationPool
        From :func:`archive.ingest.pools.read_pool` or :func:`pool_from_rows`. Column names must be
        lower case (as the pool reader makes them). Not modified.
    version_id : str, optional
        Tag put into association and product names (``asn_generate --version-id``).
        ``None`` (the ``asn_generate`` default): no version id.
    rules : {"all", "level2", "level3"}
        ``"all"``: the ``asn_generate`` defaults. ``"level2"``/``"level3"``: only the jwst
        rule file ``rules_level2b.py``/``rules_level3.py`` (``-r FILE --ignore-default``).

    Returns
    -------
    list of dict
        One JSON-able dict per association, in generator order, with exactly the content
        ``asn_generate`` writes (asn_type, asn_rule, version_id, code_version,
        degraded_status, program, constraints, asn_id, target, asn_pool,
        products: [{name, members: [{expname, exptype, ...}]}]) except that memory
        addresses in the ``constraints`` text are removed, plus one key
        ``"asn_name"``: jwst's association name, e.g. ``jw99009-o001_image2_00001_asn``
        (the file ``asn_generate`` writes is ``asn_name + ".json"``; ``asn_id`` alone is not
        unique). An empty list if nothing associates.

    Raises
    ------
    ValueError
        If the jwst rules need a column the pool lacks (the message names it; no column is
        required beforehand: a pool the generator accepts is accepted), or ``rules`` is
        unknown.
    TypeError
        If ``version_id`` is neither a str nor None.
    """
    from jwst.associations import config
    from jwst.associations.exceptions import AssociationError

    if "asn_candidate" not in pool.colnames and "ASN_CANDIDATE" in pool.colnames:
        raise ValueError("pool column names must be lower case (as AssociationPool.read makes them)")
    parsed = _options(version_id, rules)

    # asn_generate sets this global from its log level (False by default); in DEBUG mode jwst
    # keeps duplicate associations under "dup" names. Restore whatever the caller had.
    saved_debug = config.DEBUG
    config.DEBUG = (parsed.loglevel != 0) and (parsed.loglevel <= logging.DEBUG)
    try:
        associations = _run(pool, parsed)
    except KeyError as exc:
        # the rules read a column the pool does not have (jwst raises KeyError('<column>'))
        column = str(exc.args[0]) if exc.args else ""
        if column and column.lower() not in pool.colnames:
            raise ValueError(f"pool {pool.meta.get('pool_file', 'in-memory')}: the jwst association "
                             f"rules need column {column.upper()}, which the pool lacks") from exc
        raise
    finally:
        config.DEBUG = saved_debug

    result = []
    for asn in associations:
        try:
            fname, serialized = asn.dump(format=parsed.format)
        except AssociationError:  # asn_generate: "Cannot serialize association", skipped
            continue
        data = json.loads(serialized)
        if isinstance(data.get("constraints"), str):
            data["constraints"] = _ADDRESS.sub(">", data["constraints"])
        data[ASN_NAME_KEY] = fname[: -len(".json")] if fname.endswith(".json") else fname
        result.append(data)
    return result


def asn_level(asn: dict) -> int:
    """Return the processing level of an association: 2 or 3.

    Parameters
    ----------
    asn : dict
        An association from :func:`generate` (or a loaded jwst association file).

    Returns
    -------
    int
        2 if its rule (``asn_rule``, e.g. ``candidate_Asn_Lv2Image``) is defined in jwst's
        ``rules_level2b``, 3 if in ``rules_level3``; without a known rule, from ``asn_type``
        (``image2``/``spec2``/``tso-image2`` ... -> 2, ``image3``/``coron3``/``tso3`` ... -> 3).

    Raises
    ------
    ValueError
        If neither the rule nor the type tells the level.
    """
    from jwst.associations.lib import rules_level2b, rules_level3

    rule = str(asn.get("asn_rule", ""))
    cls_name = rule[rule.find("Asn_"):] if "Asn_" in rule else rule
    for level, module in ((2, rules_level2b), (3, rules_level3)):
        cls = getattr(module, cls_name, None)
        if isinstance(cls, type) and cls.__module__ == module.__name__:
            return level
    asn_type = str(asn.get("asn_type", ""))
    if asn_type.endswith("2"):
        return 2
    if asn_type.endswith("3"):
        return 3
    raise ValueError(f"cannot tell the level of association rule {rule!r} type {asn_type!r}")


def members(asn: dict) -> list[tuple[str, str, str]]:
    """List the members of an association.

    Parameters
    ----------
    asn : dict
        An association in the jwst form (``products: [{name, members: [{expname, exptype}]}]``).

    Returns
    -------
    list of (str, str, str)
        ``(product name, expname, exptype)`` for every member of every product, in order.

    Raises
    ------
    ValueError
        If the association has no ``products`` list or a product/member lacks a field.
    """
    try:
        return [
            (product["name"], member["expname"], member["exptype"])
            for product in asn["products"]
            for member in product["members"]
        ]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed association {asn.get('asn_name', asn.get('asn_id'))}: {exc!r}") from exc


def _serialize(asn: dict) -> str:
    # Same text as jwst's association_io.json.dump (indent=4, separators=(",", ": ")), the
    # keys in the order jwst wrote them, without the archive's asn_name key.
    body = {k: v for k, v in asn.items() if k != ASN_NAME_KEY}
    return json.dumps(body, indent=4, separators=(",", ": "))


def write_json(asn: dict, directory) -> Path:
    """Write an association as the JSON file ``asn_generate`` would write.

    Parameters
    ----------
    asn : dict
        An association from :func:`generate` (must have its ``asn_name``).
    directory : str or os.PathLike
        Existing directory to write into.

    Returns
    -------
    pathlib.Path
        ``directory / (asn_name + ".json")``, the name jwst's ``Association.dump`` gives,
        e.g. ``jw99009-o001_image3_00001_asn.json``. The content is jwst's serialization
        (4-space indented JSON) without the ``asn_name`` key.

    Raises
    ------
    ValueError
        If ``asn`` has no usable ``asn_name``.
    FileExistsError
        If the file exists with different content (it is never overwritten). Existing
        identical content is left as it is.
    FileNotFoundError
        If ``directory`` does not exist.

    Notes
    -----
    The file is written to a temporary file in the same directory and moved into place with
    ``os.link`` (fails if the name exists), so readers never see a partial file and a
    concurrent writer of different content cannot be overwritten.
    """
    name = asn.get(ASN_NAME_KEY)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"association has no usable {ASN_NAME_KEY!r}: {name!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    target = directory / (name if name.endswith(".json") else name + ".json")
    text = _serialize(asn)

    def same_content() -> bool:
        try:
            return target.read_text() == text
        except FileNotFoundError:
            return False

    if target.exists():
        if same_content():
            return target
        raise FileExistsError(f"{target} exists with different content")

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600; files follow the umask
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() refuses an existing name, unlike replace(): no race with another writer.
            os.link(tmp, target)
        except FileExistsError:
            if same_content():
                return target
            raise FileExistsError(f"{target} exists with different content") from None
        except OSError:
            # File systems without hard links: fall back to replace() after a last check.
            if target.exists():
                if same_content():
                    return target
                raise FileExistsError(f"{target} exists with different content") from None
            os.replace(tmp, target)
            tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    return target
