"""A local, offline CRDS cache: configure it, fill it, and ask it for best references.

The cache has the standard CRDS layout::

    <crds_path>/config/jwst/server_config      (a Python literal; makes crds work offline)
    <crds_path>/mappings/jwst/*.pmap|imap|rmap
    <crds_path>/references/jwst/<instrument>/*.fits   (ref_subdir_mode "instrument")

Two kinds of context live in it: real ones copied from a CRDS server's mappings
(:func:`install_real_context`) and synthetic ones that select the reference files written
by :mod:`simulation.ramps` (:func:`write_synthetic_context`, :func:`derive_context`).

Synthetic names are clearly apart from operational ones: contexts
``jwst_sim_NNNN.pmap``, instrument mappings ``jwst_sim_<instr>_NNNN.imap``, reference
mappings ``jwst_sim_<instr>_<reftype>_NNNN.rmap``. crds accepts these names (it reads
instrument and filekind from the mapping headers once the files are in the cache).

A synthetic context provides the reftypes of :data:`SYNTHETIC_PARKEYS`: the detector-level
ones (dark, superbias, readnoise, mask, linearity, gain, saturation, ipc, and MIRI's
reset, rscd and emicorr (an ASDF file)) and, for imaging, the stage-2/3 ones written by
:mod:`simulation.imaging_refs` (distortion, filteroffset, flat, photom, area, apcorr,
abvegaoffset), and for MIRI LRS fixed slit those of :mod:`simulation.spectroscopy` (specwcs,
pathloss besides distortion, flat, photom), each selected by real parkeys (DETECTOR,
EXP_TYPE, FILTER, PUPIL, ...). It
lists every other jwst reftype (bkg, wavelengthrange, regions, camera, msa, fore, ...) and
the calwebb step-parameter reftypes (``pars-*``) as "N/A": jwst steps needing those are
skipped under it (or use their defaults), not failed, and jwst runs fully offline.

A note on process state: crds caches its configuration and the mappings it has loaded in
the process. :func:`configure` resets what it can (environment, crds's cached
configuration and its mapping cache), so one process may switch between caches, but a
mapping *name* always refers to one content: never write two different files under the
same mapping name in two caches used by the same process.
"""
from __future__ import annotations

import ast
import filecmp
import os
import re
import shutil
from pathlib import Path

OBSERVATORY = "jwst"
SERVERLESS_URL = "https://jwst-serverless-mode.stsci.edu"
DEFAULT_USEAFTER = "1900-01-01 00:00:00"

# Match parameters per reftype used in synthetic rmaps (all of them real JWST parkeys; the
# same tuple for every instrument so that a synthetic context is uniform).
SYNTHETIC_PARKEYS: dict[str, tuple[str, ...]] = {
    "dark": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT", "META.SUBARRAY.NAME"),
    "superbias": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT", "META.SUBARRAY.NAME"),
    "readnoise": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT", "META.SUBARRAY.NAME"),
    "mask": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "linearity": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "gain": ("META.INSTRUMENT.DETECTOR", "META.SUBARRAY.NAME"),
    "saturation": ("META.INSTRUMENT.DETECTOR",),
    "ipc": ("META.INSTRUMENT.DETECTOR",),
    "reset": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT", "META.SUBARRAY.NAME"),
    "rscd": ("META.INSTRUMENT.DETECTOR",),
    "emicorr": ("META.INSTRUMENT.DETECTOR",),
    # stage-2/3 imaging (simulation.imaging_refs); a FILTER/PUPIL/EXP_TYPE of "N/A" in a
    # reference (e.g. a filter-independent AREA) matches any value
    "distortion": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "filteroffset": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "flat": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE", "META.INSTRUMENT.FILTER",
             "META.INSTRUMENT.PUPIL"),
    "photom": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "area": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "apcorr": ("META.EXPOSURE.TYPE",),
    "abvegaoffset": ("META.EXPOSURE.TYPE",),
    # stage-2 spectroscopy (simulation.spectroscopy: MIRI LRS fixed slit)
    "specwcs": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "pathloss": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
    "extract1d": ("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE"),
}
#: reftypes that jwst 3.0 steps may ask for; a synthetic instrument mapping lists every one
#: it does not provide as "N/A" so that steps needing them are skipped, not failed
JWST_REFTYPES = (
    "abvegaoffset", "apcorr", "area", "barshadow", "bkg", "camera", "chromcorr", "collimator",
    "cubepar", "dark", "dflat", "disperser", "distortion", "drizpars", "emicorr", "extract1d",
    "fflat", "filteroffset", "flat", "fore", "fpa", "fringe", "fringefreq", "gain", "ifufore",
    "ifupost", "ifuslicer", "ipc", "lastframe", "linearity", "mask", "mrsptcorr", "mrsxartcorr",
    "msa", "msaoper", "nrm", "ote", "pastasoss", "pathloss", "persat", "photom", "pictureframe",
    "psf", "psfmask", "readnoise", "refpix", "regions", "reset", "resol", "rscd", "saturation",
    "sflat", "sirskernel", "speckernel", "specprofile", "specwcs", "straymask", "superbias",
    "throughput", "trapdensity", "trappars", "tsophot", "wavecorr", "wavelengthrange",
    "wcsregions", "wfssbkg",
)
#: step-parameter reftypes of calwebb_detector1/image2/image3 (stpipe asks CRDS for them);
#: listed as "N/A" so the steps use their defaults without CRDS lookup errors
JWST_PARS_REFTYPES = tuple("pars-" + name for name in (
    "detector1pipeline", "groupscalestep", "dqinitstep", "emicorrstep", "saturationstep",
    "ipcstep", "superbiasstep", "refpixstep", "linearitystep", "persistencestep",
    "darkcurrentstep", "chargemigrationstep", "jumpstep", "cleanflickernoisestep",
    "rampfitstep", "gainscalestep", "firstframestep", "lastframestep", "resetstep",
    "rscdstep", "pictureframestep", "image2pipeline", "backgroundstep", "assignwcsstep",
    "flatfieldstep", "photomstep", "resamplestep", "image3pipeline", "assignmtwcsstep",
    "tweakregstep", "skymatchstep", "outlierdetectionstep", "sourcecatalogstep"))
_USEAFTER_KEYS = ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")
# parkey -> FITS keyword in a reference file's primary header
_PARKEY_TO_FITS = {
    "META.INSTRUMENT.DETECTOR": "DETECTOR",
    "META.EXPOSURE.READPATT": "READPATT",
    "META.SUBARRAY.NAME": "SUBARRAY",
    "META.EXPOSURE.TYPE": "EXP_TYPE",
    "META.INSTRUMENT.FILTER": "FILTER",
    "META.INSTRUMENT.BAND": "BAND",
    "META.INSTRUMENT.PUPIL": "PUPIL",
}
_INSTRUMENTS = ("fgs", "miri", "nircam", "niriss", "nirspec")


class BestrefsError(RuntimeError):
    """CRDS could not compute best references for a header (message names the file)."""


#: another name for :class:`BestrefsError`
CrdsLookupError = BestrefsError


# ----------------------------------------------------------------------------------------
# configuration

def _server_config(context: str) -> dict:
    import crds

    return {
        "observatory": OBSERVATORY,
        "operational_context": context,
        "edit_context": context,
        "bad_files": "",
        "bad_files_list": [],
        "force_remote_mode": False,
        "mappings": [],
        "reference_url": {},
        "mapping_url": {},
        "crds_version": {"str": crds.__version__},
        "last_synced": "2026-11-23 00:00:00",
    }


def _ensure_layout(crds_path: Path, context: str | None = None) -> None:
    (crds_path / "mappings" / OBSERVATORY).mkdir(parents=True, exist_ok=True)
    (crds_path / "references" / OBSERVATORY).mkdir(parents=True, exist_ok=True)
    cfg = crds_path / "config" / OBSERVATORY / "server_config"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    if not cfg.exists() or context is not None:
        if context is None:
            existing = list_contexts(crds_path)
            context = existing[-1] if existing else "jwst_0541.pmap"
        cfg.write_text(repr(_server_config(context)) + "\n")


def configure(crds_path: str | Path) -> None:
    """Point crds at the local cache ``crds_path`` and make it work offline.

    Sets ``CRDS_PATH``, ``CRDS_SERVER_URL`` (a "serverless" URL: crds then uses only the
    cache) and ``CRDS_MODE=local`` in ``os.environ``, creates the cache layout and a
    ``config/jwst/server_config`` if missing, and clears crds's in-process caches so that a
    process can switch between caches.

    Raises
    ------
    OSError
        If the cache directory cannot be created.
    """
    crds_path = Path(crds_path).resolve()
    crds_path.mkdir(parents=True, exist_ok=True)
    _ensure_layout(crds_path)
    os.environ["CRDS_PATH"] = str(crds_path)
    os.environ["CRDS_SERVER_URL"] = SERVERLESS_URL
    os.environ["CRDS_MODE"] = "local"
    os.environ["CRDS_OBSERVATORY"] = OBSERVATORY
    os.environ.pop("CRDS_CONTEXT", None)
    _clear_crds_caches()


def _clear_crds_caches() -> None:
    """Forget the mappings and configuration crds memoised.

    crds memoises them with its @cached functions (the mapping loader among them); once
    they are cleared, a configure() to another cache takes effect.
    """
    from crds.core import utils

    utils.clear_function_caches()


def cache_root() -> Path:
    """Return the configured CRDS cache (``CRDS_PATH``, set by :func:`configure`).

    Raises
    ------
    RuntimeError
        If no cache is configured.
    """
    return _cache_path()


def _cache_path() -> Path:
    try:
        return Path(os.environ["CRDS_PATH"])
    except KeyError:
        raise RuntimeError("CRDS cache not configured: call archive.crds.cache.configure() first") from None


def _mapping_dir(crds_path: Path) -> Path:
    return Path(crds_path) / "mappings" / OBSERVATORY


# ----------------------------------------------------------------------------------------
# mapping text: read and write

def _parse_mapping(path: Path) -> tuple[dict, object]:
    """Return (header, selector) of a mapping file as plain Python values.

    ``Match({...})`` and ``UseAfter({...})`` are unwrapped to their dicts; match keys are
    always tuples (a one-parkey rmap's plain string keys become 1-tuples).

    Raises
    ------
    ValueError
        If the mapping uses another selector class (e.g. SelectVersion), which the
        synthetic-context writer does not reproduce.
    """
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    values = {}

    class Unwrap(ast.NodeTransformer):
        def visit_Call(self, node):
            name = getattr(node.func, "id", None)
            if name not in ("Match", "UseAfter") or len(node.args) != 1:
                raise ValueError(f"{path}: selector {name!r} not supported here")
            return self.visit(node.args[0])

    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            node = Unwrap().visit(stmt.value)
            values[stmt.targets[0].id] = ast.literal_eval(node)
    header, selector = values["header"], values["selector"]
    if str(header.get("mapping", "")).upper() == "REFERENCE" and isinstance(selector, dict):
        selector = {(k if isinstance(k, tuple) else (k,)): v for k, v in selector.items()}
    return header, selector


def _fmt_header(header: dict) -> str:
    lines = ["header = {"]
    for key in sorted(header):
        val = header[key]
        if isinstance(val, dict):
            lines.append(f"    {key!r} : {{")
            for k2, v2 in sorted(val.items()):
                if isinstance(v2, dict):
                    lines.append(f"        {k2!r} : {{")
                    for k3, v3 in sorted(v2.items()):
                        lines.append(f"            {k3!r} : {v3!r},")
                    lines.append("        },")
                else:
                    lines.append(f"        {k2!r} : {v2!r},")
            lines.append("    },")
        else:
            lines.append(f"    {key!r} : {val!r},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _write_rmap(path: Path, header: dict, selections: dict[tuple, dict[str, str]]) -> None:
    out = [_fmt_header(header), "selector = Match({"]
    for match in sorted(selections):
        value = selections[match]
        if isinstance(value, str):          # e.g. 'N/A' directly under a match
            out.append(f"    {tuple(match)!r} : {value!r},")
            continue
        out.append(f"    {tuple(match)!r} : UseAfter({{")
        for date in sorted(value):
            out.append(f"        {date!r} : {value[date]!r},")
        out.append("    }),")
    out.append("})")
    path.write_text("\n".join(out) + "\n")
    _update_checksum(path)


def _write_plain(path: Path, header: dict, selector: dict[str, str]) -> None:
    out = [_fmt_header(header), "selector = {"]
    for key in sorted(selector):
        out.append(f"    {key!r} : {selector[key]!r},")
    out.append("}")
    path.write_text("\n".join(out) + "\n")
    _update_checksum(path)


def _update_checksum(path: Path) -> None:
    """Rewrite the mapping's sha1sum in place with crds's own code.

    As ``crds.refactoring.checksum.update_checksum`` does, without its slow duplicate
    check: the mappings written here have no duplicate keys by construction.
    """
    from crds.core import rmap

    rmap.Mapping.from_file(str(path), ignore_checksum=True).write()


def _next_serial(crds_path: Path, pattern: str) -> int:
    r"""Return the next free 4-digit serial for names matching ``pattern`` (one ``(\d{4})`` group)."""
    rx = re.compile(pattern)
    serials = [int(m.group(1)) for p in _mapping_dir(crds_path).iterdir() if (m := rx.fullmatch(p.name))]
    return max(serials, default=0) + 1


# ----------------------------------------------------------------------------------------
# filling the cache

def install_real_context(crds_path: str | Path, mappings_dir: str | Path) -> list[str]:
    """Copy a real context closure (``*.pmap``, ``*.imap``, ``*.rmap``) into the cache.

    Returns the names of the ``.pmap`` files copied. Reference files are not copied (a real
    context's references are usually not available offline; bestrefs does not need them).

    Raises
    ------
    FileNotFoundError
        If ``mappings_dir`` holds no .pmap file.
    ValueError
        If a mapping's name is not a CRDS mapping name, or the cache holds another file of
        that name (never replaced).
    """
    crds_path = Path(crds_path)
    mappings_dir = Path(mappings_dir)
    pmaps = sorted(p.name for p in mappings_dir.glob("*.pmap"))
    if not pmaps:
        raise FileNotFoundError(f"{mappings_dir}: no .pmap in this directory")
    _ensure_layout(crds_path)
    dest = _mapping_dir(crds_path)
    for src in sorted(mappings_dir.iterdir()):
        if src.suffix in (".pmap", ".imap", ".rmap"):
            target = dest / check_crds_name(src.name, "mapping")
            if target.exists():
                if not filecmp.cmp(src, target, shallow=False):
                    raise ValueError(f"{target} exists with other content than {src}: a CRDS name is one content")
                continue
            _copy_into_cache(src, target)
    return pmaps


def _selector_text(text: str) -> str:
    """Return the selector part of a mapping's text.

    Its header names other mappings too (``derived_from``), which are not part of the
    closure.
    """
    m = re.search(r"^selector\s*=", text, flags=re.M)
    return text[m.start():] if m else ""


def _mapping_names(text: str) -> set[str]:
    return set(re.findall(r"['\"]([A-Za-z0-9_.-]+\.(?:imap|rmap))['\"]", _selector_text(text)))


def _reference_names(text: str) -> set[str]:
    return set(re.findall(r"['\"]([A-Za-z0-9_.-]+\.(?:fits|asdf|json|yaml))['\"]", _selector_text(text)))


#: this project's synthetic mapping names (module docstring), which crds' own rule does not list
SYNTHETIC_MAPPING_RE = re.compile(r"jwst_sim(_[a-z0-9]+)*_[0-9]{4}\.[pir]map")
#: a reference file name as mappings name them: one plain name with a CRDS reference extension
REFERENCE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.(fits|asdf|json|yaml)")
#: this project's synthetic reference names (``jwst_sim_<instrument>_<reftype>_<parts>.<ext>``,
#: :mod:`simulation`), which crds' own rule accepts only for FITS
SYNTHETIC_REFERENCE_RE = re.compile(r"jwst_sim(_[a-z0-9-]+)+\.(fits|asdf|json)")


def check_crds_name(name: str, kind: str = "context") -> str:
    """Return ``name`` if it is a CRDS name of that kind (crds' own name rules) and one plain file name.

    Parameters
    ----------
    name : str
        A file name such as ``jwst_1322.pmap`` or ``jwst_nircam_dark_0001.fits``.
    kind : {"context", "mapping", "reference"}

    Raises
    ------
    ValueError
        Naming the problem (``../`` or a separator: not one file name; not a CRDS name).
    """
    from crds.core import config as crds_config

    from ..catalog.paths import name_component

    name_component(name, f"CRDS {kind} name")

    def mapping(n: str) -> bool:  # crds' rule, or this project's synthetic jwst_sim_* names
        return bool(crds_config.is_valid_mapping_name(n) or SYNTHETIC_MAPPING_RE.fullmatch(n))

    ok = {"context": lambda n: mapping(n) and n.endswith(".pmap"),
          "mapping": mapping,
          "reference": lambda n: bool((crds_config.is_valid_reference_name(n) or SYNTHETIC_REFERENCE_RE.fullmatch(n))
                                      and REFERENCE_NAME_RE.fullmatch(n))
          }[kind](name)
    if not ok:
        raise ValueError(f"{name!r}: not a CRDS {kind} name")
    return name


def reference_destination(crds_path: str | Path, source_file: str | Path) -> Path:
    """Return where reference file ``source_file`` belongs in the cache, as crds locates it.

    crds' own ``locate_file`` for the observatory decides (in "instrument" mode it reads the
    instrument from the file itself when its name does not say it), so the workers'
    ``crds.locate_file`` finds the file there. The result is checked to lie inside the cache.

    Raises
    ------
    ValueError
        If crds places it outside the cache, or cannot tell where it goes.
    """
    import crds.jwst.locate as jwst_locate

    from ..catalog.paths import under_root

    crds_path = Path(crds_path)
    if os.environ.get("CRDS_PATH") != str(crds_path):
        configure(crds_path)
    try:
        located = Path(jwst_locate.locate_file(str(source_file)))
    except Exception as exc:
        raise ValueError(f"{source_file}: crds cannot tell where it goes in the cache: {exc}") from exc
    return under_root(located, crds_path)


def add_context(crds_path: str | Path, context: str, source: str | Path | None = None) -> int:
    """Put ``context`` and its whole closure into the local cache, all or nothing.

    ``source`` is another CRDS cache (``mappings/jwst`` and ``references/jwst`` inside) or a
    flat directory of mapping and reference files; None means the context must already be
    in the cache (synced by ``crds sync --contexts CONTEXT`` or written here). Every name
    is checked against crds' name rules and the whole closure (every mapping, and each
    reference file the source has) is checked before any file is copied; reference files
    go where crds' own locate function puts them (:func:`reference_destination`). If
    anything fails after copying began, the files copied are removed again. Existing
    files are never replaced: a CRDS name always stands for one content.

    Returns
    -------
    int : number of files copied.

    Raises
    ------
    FileNotFoundError
        If the context or a mapping of its closure is missing.
    ValueError
        If a name is not a CRDS name (or not one plain file name), or a file of the same
        name but different content is already in the cache.
    """
    from ..catalog.paths import under_root

    check_crds_name(context, "context")
    crds_path = Path(crds_path)
    _ensure_layout(crds_path)
    dest = _mapping_dir(crds_path)
    plan: list[tuple[Path, Path]] = []  # (source file, destination): checked before any copy
    if source is not None:
        source = Path(source)
        src_maps = source / "mappings" / OBSERVATORY if (source / "mappings" / OBSERVATORY).is_dir() else source
        ref_dir = source / "references" / OBSERVATORY
        todo, seen, refs = [context], set(), set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            check_crds_name(name, "mapping")
            src = src_maps / name
            if not src.is_file():
                raise FileNotFoundError(f"{name} (closure of {context}): not in {src_maps}")
            plan.append((src, under_root(dest / name, crds_path)))
            text = src.read_text()
            todo.extend(_mapping_names(text) - seen)
            if name.endswith(".rmap"):
                refs |= _reference_names(text)
        for ref in sorted(refs):
            check_crds_name(ref, "reference")
            hits = sorted(ref_dir.rglob(ref)) if ref_dir.is_dir() else []
            hits += [p for p in [source / ref] if p.is_file()]
            if hits:
                plan.append((hits[0], reference_destination(crds_path, hits[0])))
        for src, target in plan:
            if target.exists() and not filecmp.cmp(src, target, shallow=False):
                raise ValueError(f"{target} exists with other content than {src}: a CRDS name is one content")
    elif not (dest / context).is_file():
        raise FileNotFoundError(f"{context}: not in the CRDS cache {crds_path} (give --from a cache that has it, "
                                f"or run 'crds sync --contexts {context}' with CRDS_PATH={crds_path})")
    copied: list[Path] = []
    try:
        for src, target in plan:
            if not target.exists():
                _copy_into_cache(src, target)
                copied.append(target)
        configure(crds_path)
        import crds

        try:
            crds.get_cached_mapping(context)
        except Exception as exc:
            raise FileNotFoundError(f"{context}: its closure is incomplete in {crds_path}: {exc}") from exc
    except BaseException:
        for f in copied:
            f.unlink(missing_ok=True)
        _clear_crds_caches()
        raise
    return len(copied)


#: FITS keyword -> datamodel meta path, to read the properties of ASDF references (EMICORR) and
#: of JSON ones (EXTRACT1D, whose properties this project writes under "meta" the same way)
_ASDF_META = {"INSTRUME": "instrument.name", "REFTYPE": "reftype", "USEAFTER": "useafter",
              "DETECTOR": "instrument.detector", "READPATT": "exposure.readpatt",
              "SUBARRAY": "subarray.name", "EXP_TYPE": "exposure.type",
              "FILTER": "instrument.filter", "BAND": "instrument.band",
              "PUPIL": "instrument.pupil"}


def _ref_properties(path: Path) -> dict[str, str]:
    from astropy.io import fits

    if Path(path).suffix in (".asdf", ".json"):    # ASDF (EMICORR) or JSON (EXTRACT1D): a "meta" tree
        if Path(path).suffix == ".json":
            import json

            meta = json.loads(Path(path).read_text()).get("meta", {})
        else:
            import asdf

            with asdf.open(path, lazy_load=True, memmap=False) as af:
                meta = af.tree.get("meta", {})
        hdr = {}
        for key, dotted in _ASDF_META.items():
            node = meta
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            hdr[key] = "" if node is None else node
    else:
        hdr = fits.getheader(path, 0)
    props = {k: str(hdr.get(k, "")).strip() for k in ("INSTRUME", "REFTYPE", "USEAFTER", *_PARKEY_TO_FITS.values())}
    if not props["INSTRUME"] or not props["REFTYPE"]:
        raise ValueError(f"{path}: not a CRDS reference file (INSTRUME/REFTYPE missing)")
    return props


def _match_tuple(props: dict[str, str], parkeys: tuple[str, ...]) -> tuple[str, ...]:
    vals = []
    for key in parkeys:
        val = props.get(_PARKEY_TO_FITS[key], "").upper()
        if val in ("", "GENERIC", "ANY", "N/A", "NONE"):
            val = "N/A"
        vals.append(val)
    return tuple(vals)


def _useafter(props: dict[str, str]) -> str:
    ua = props.get("USEAFTER", "").replace("T", " ")
    if not ua:
        return DEFAULT_USEAFTER
    return ua if len(ua) > 10 else ua + " 00:00:00"


def _copy_into_cache(src: Path, target: Path) -> None:
    """Copy ``src`` to ``target`` (a new file) atomically, its mode from the process umask.

    The cache is shared storage: a copied file is readable as the archive's other files are
    (0644 with the default ``ARCHIVE_UMASK``), whatever the source's mode. An existing
    ``target`` is never replaced (FileExistsError).
    """
    from ..ingest.storage import atomic_copy, current_umask

    atomic_copy(src, target)
    shutil.copystat(src, target)                    # the source's times, as crds sync keeps them
    os.chmod(target, 0o666 & ~current_umask())      # ... but the archive's mode


def _place_reference(crds_path: Path, path: Path) -> tuple[Path, bool]:
    """Copy reference file ``path`` into the cache where crds' own locate function puts it.

    The name is checked (:func:`check_crds_name`), the destination comes from
    :func:`reference_destination` and lies inside the cache; a file of that name already
    there must have the same content (a CRDS name is one content), it is never replaced.
    Returns the destination and whether this call created it.

    Raises
    ------
    ValueError
        For a name that is not a CRDS reference name, a destination crds cannot tell or
        outside the cache, or another file of that name in the cache.
    """
    dest = _check_placement(crds_path, path)
    if dest.exists():
        return dest, False
    _copy_into_cache(path, dest)
    return dest, True


def _check_placement(crds_path: Path, path: Path) -> Path:
    """Return where :func:`_place_reference` puts ``path``, checking it can (nothing written).

    Raises
    ------
    ValueError
        As :func:`_place_reference`.
    """
    check_crds_name(path.name, "reference")
    dest = reference_destination(crds_path, path)
    if dest.exists() and dest.resolve() != path.resolve() and not filecmp.cmp(path, dest, shallow=False):
        raise ValueError(f"{dest} exists with other content than {path}: a CRDS name is one content")
    return dest


def write_synthetic_context(crds_path: str | Path, references, context_name: str | None = None,
                            base_pmap: str | None = None, not_applicable=()) -> str:
    """Write a synthetic CRDS context that selects exactly the given reference files.

    Each reference file's primary header (INSTRUME, REFTYPE, DETECTOR, SUBARRAY, READPATT,
    USEAFTER) decides where it goes: one rmap per (instrument, reftype) matching on
    :data:`SYNTHETIC_PARKEYS` (a SUBARRAY of GENERIC or a missing READPATT become ``N/A``,
    which crds treats as "any") then UseAfter on META.OBSERVATION.DATE/TIME. Mappings get
    valid sha1sums; references are copied where crds' locate function puts them
    (``<crds_path>/references/jwst/<instrument>/``, :func:`reference_destination`).

    Parameters
    ----------
    crds_path : path of the cache (created if missing).
    references : iterable of paths to reference files (names must be unique).
    context_name : the .pmap name; default the next free ``jwst_sim_NNNN.pmap``.
    base_pmap : optional context in the cache to extend: the new context keeps everything
        of it and adds the given references (a synthetic rmap of the base is merged with
        the new entries, new ones winning on equal match and useafter; a real rmap of the
        base is replaced by a synthetic one for that instrument and reftype).
    not_applicable : iterable of (instrument, reftype, dict)
        Modes for which a reftype does not apply: each dict of FITS keywords (DETECTOR,
        EXP_TYPE ...) becomes an "N/A" match in the reftype's rmap (keywords it lacks match
        any value), as real rmaps list the modes a reftype does not serve: crds then answers
        N/A for them instead of failing the look-up (e.g. FILTEROFFSET for MIRI LRS in a
        context that also serves MIRI imaging). A match a reference claims is kept.

    Returns
    -------
    str : the .pmap name (also made the cache's operational context).

    Raises
    ------
    ValueError
        If a file is not a reference file, two files claim the same match and useafter,
        a reftype has no entry in :data:`SYNTHETIC_PARKEYS`, an instrument is not a JWST
        one, ``context_name`` is not a CRDS context name, or the cache holds another file
        of a reference's name (checked before any mapping is written).
    """
    crds_path = Path(crds_path)
    if context_name is not None:  # names checked before any file is written
        check_crds_name(context_name, "context")
    not_applicable = [(_instrument(i, "N/A"), r, k) for i, r, k in not_applicable]
    _ensure_layout(crds_path)
    table: dict[tuple[str, str], dict[tuple, dict[str, str]]] = {}
    to_place: list[Path] = []
    for ref in references:
        ref = Path(ref)
        props = _ref_properties(ref)
        instr, reftype = _instrument(props["INSTRUME"], ref), props["REFTYPE"].lower()
        if reftype not in SYNTHETIC_PARKEYS:
            raise ValueError(f"{ref}: reftype {reftype!r} not supported by synthetic contexts")
        match = _match_tuple(props, SYNTHETIC_PARKEYS[reftype])
        ua = _useafter(props)
        sel = table.setdefault((instr, reftype), {}).setdefault(match, {})
        if ua in sel and sel[ua] != ref.name:
            raise ValueError(f"{ref}: same match {match} and useafter {ua} as {sel[ua]}")
        sel[ua] = ref.name
        to_place.append(ref)
    for instr, reftype, keywords in not_applicable:
        instr, reftype = _instrument(instr, "N/A"), reftype.lower()
        if reftype not in SYNTHETIC_PARKEYS:
            raise ValueError(f"N/A for {instr} {reftype}: reftype not supported by synthetic contexts")
        match = _match_tuple({str(k).upper(): str(v) for k, v in keywords.items()}, SYNTHETIC_PARKEYS[reftype])
        table.setdefault((instr, reftype), {}).setdefault(match, "N/A")
    return _placed_then(crds_path, to_place,
                        lambda: _write_synthetic_mappings(crds_path, table, context_name, base_pmap))


def _placed_then(crds_path: Path, refs: list[Path], write_mappings):
    """Copy ``refs`` into the cache, then call ``write_mappings()``; all or nothing.

    Every name and destination is checked before the first copy; if a copy or the mappings
    fail, the files this call copied are removed again, so a failed context leaves no
    references behind that no mapping names. Returns what ``write_mappings`` returns.
    """
    for ref in refs:
        _check_placement(crds_path, ref)
    placed: list[Path] = []
    try:
        for ref in refs:
            dest, new_file = _place_reference(crds_path, ref)
            if new_file:
                placed.append(dest)
        return write_mappings()
    except BaseException:
        for dest in placed:
            dest.unlink(missing_ok=True)
        raise


def _write_synthetic_mappings(crds_path: Path, table, context_name, base_pmap) -> str:
    """Write the mappings of :func:`write_synthetic_context` (``table`` as built there)."""
    if base_pmap is None:
        return _write_context(crds_path, table, context_name, derived_from="(synthetic)")
    psel, instr_tables = _load_context_tables(crds_path, base_pmap)
    for (instr, reftype), selections in table.items():
        old = instr_tables.get(instr, (None, {}))[1].get(reftype, "N/A")
        if not str(old).endswith(".rmap"):
            continue
        oheader, osel = _parse_mapping(_mapping_dir(crds_path) / old)
        if tuple(oheader.get("parkey", ((),))[0]) != SYNTHETIC_PARKEYS[reftype]:
            continue                      # a real rmap: replaced by the synthetic one
        merged = {m: (dict(ua) if isinstance(ua, dict) else ua) for m, ua in osel.items()}
        for match, ua in selections.items():
            if isinstance(ua, str):                  # an N/A match: a reference of the base wins
                merged.setdefault(match, ua)
            elif isinstance(merged.get(match), dict):
                merged[match].update(ua)
            else:
                merged[match] = dict(ua)
        table[(instr, reftype)] = merged
    return _write_context(crds_path, table, context_name, derived_from=base_pmap,
                          base=(psel, instr_tables))


def _instrument(value, what) -> str:
    """Return ``value`` as a JWST instrument name, lower case (it becomes part of mapping file names).

    Raises
    ------
    ValueError
        For anything but FGS, MIRI, NIRCAM, NIRISS, NIRSPEC.
    """
    instr = str(value).strip().lower()
    if instr not in _INSTRUMENTS:
        raise ValueError(f"{what}: instrument {value!r} is not a JWST instrument ({', '.join(_INSTRUMENTS)})")
    return instr


def _write_context(crds_path: Path, table, context_name, derived_from, base=None,
                   rmap_headers=None) -> str:
    """Write rmaps for ``table`` ((instr, reftype) -> selections) and imaps/pmap over them.

    ``base`` is an optional (pmap_selector, {instr: (imap_header, {reftype: mapping})}) whose
    entries are kept unless ``table`` overrides them; ``rmap_headers`` optionally gives, per
    (instr, reftype), the base rmap header to keep (parkeys, substitutions...).
    """
    rmap_headers = rmap_headers or {}
    mdir = _mapping_dir(crds_path)
    if context_name is None:
        serial = _next_serial(crds_path, r"jwst_sim_(\d{4})\.pmap")
        context_name = f"jwst_sim_{serial:04d}.pmap"
    check_crds_name(context_name, "context")
    if (mdir / context_name).exists():
        raise ValueError(f"{context_name}: already exists in {mdir}")
    imaps: dict[str, dict[str, str]] = {}
    if base is not None:
        for instr, (_, sel) in base[1].items():
            imaps[instr] = dict(sel)
    for (instr, reftype), selections in sorted(table.items()):
        serial = _next_serial(crds_path, rf"jwst_sim_{instr}_{reftype}_(\d{{4}})\.rmap")
        name = f"jwst_sim_{instr}_{reftype}_{serial:04d}.rmap"
        if (instr, reftype) in rmap_headers:
            header = dict(rmap_headers[(instr, reftype)])
            header.update(name=name, sha1sum="0", derived_from=imaps[instr][reftype])
            _write_rmap(mdir / name, header, selections)
            imaps[instr][reftype] = name
            continue
        header = {
            "classes": ("Match", "UseAfter"),
            "derived_from": imaps.get(instr, {}).get(reftype, derived_from),
            "filekind": reftype.upper(),
            "instrument": instr.upper(),
            "mapping": "REFERENCE",
            "name": name,
            "observatory": "JWST",
            "parkey": (SYNTHETIC_PARKEYS[reftype], _USEAFTER_KEYS),
            "sha1sum": "0",
            "substitutions": {"META.SUBARRAY.NAME": {"GENERIC": "N/A"}},
        }
        _write_rmap(mdir / name, header, selections)
        imaps.setdefault(instr, {})[reftype] = name
    changed_instr = {instr for instr, _ in table}
    pmap_sel = dict(base[0]) if base is not None else {}
    for instr in sorted(imaps):
        if instr not in changed_instr and instr.upper() in pmap_sel:
            continue
        serial = _next_serial(crds_path, rf"jwst_sim_{instr}_(\d{{4}})\.imap")
        name = f"jwst_sim_{instr}_{serial:04d}.imap"
        header = {
            "derived_from": pmap_sel.get(instr.upper(), derived_from),
            "instrument": instr.upper(),
            "mapping": "INSTRUMENT",
            "name": name,
            "observatory": "JWST",
            "parkey": ("REFTYPE",),
            "sha1sum": "0",
        }
        selector = {}
        if base is None or instr not in base[1]:      # a new instrument mapping: list N/A
            selector = {rt.upper(): "N/A" for rt in JWST_REFTYPES + JWST_PARS_REFTYPES}
        selector.update({rt.upper(): rm for rt, rm in imaps[instr].items()})
        _write_plain(mdir / name, header, selector)
        pmap_sel[instr.upper()] = name
    header = {
        "derived_from": derived_from,
        "description": "Synthetic context for simulated exposures (archive.crds.cache)",
        "mapping": "PIPELINE",
        "name": context_name,
        "observatory": "JWST",
        "parkey": ("META.INSTRUMENT.NAME",),
        "sha1sum": "0",
    }
    _write_plain(mdir / context_name, header, pmap_sel)
    _ensure_layout(crds_path, context_name)
    return context_name


def _load_context_tables(crds_path: Path, pmap: str):
    mdir = _mapping_dir(crds_path)
    pheader, psel = _parse_mapping(mdir / pmap)
    instr_tables = {}
    for instr, imap in psel.items():
        if not str(imap).endswith(".imap"):
            continue
        iheader, isel = _parse_mapping(mdir / imap)
        instr_tables[instr.lower()] = (iheader, {rt.lower(): rm for rt, rm in isel.items()})
    return psel, instr_tables


def derive_context(crds_path: str | Path, base_pmap: str, replacements: dict,
                   context_name: str | None = None) -> str:
    """Write a new context equal to ``base_pmap`` except for some references.

    Parameters
    ----------
    base_pmap : a context in the cache: synthetic, or real (then the replaced rmaps keep
        their real parkeys and substitutions; rmaps using selectors other than
        Match/UseAfter cannot be replaced and raise ValueError).
    replacements : ``{(instrument, reftype, match_key): new_reference_path}``. ``match_key``
        is either a full match tuple of the base rmap (e.g. ``('NRCA1', 'N/A')``) or one
        value (e.g. ``'NRCA1'``) selecting every match tuple that contains it. The new file
        replaces the base file under every useafter date of the selected tuples; it is
        copied into the cache.
    context_name : default the next free ``jwst_sim_NNNN.pmap``.

    Returns
    -------
    str : the new .pmap name. Only the rmaps (and imaps) with a replacement are new files;
    everything else is shared with the base context.

    Raises
    ------
    KeyError
        If an instrument/reftype/match_key is not in the base context.
    """
    crds_path = Path(crds_path)
    if context_name is not None:  # checked before any file is written
        check_crds_name(context_name, "context")
    psel, instr_tables = _load_context_tables(crds_path, base_pmap)
    table: dict[tuple[str, str], dict] = {}
    rmap_headers: dict[tuple[str, str], dict] = {}
    to_place: list[Path] = []
    for (instr, reftype, key), new_ref in replacements.items():
        instr, reftype = _instrument(instr, new_ref), reftype.lower()
        rmap_name = instr_tables.get(instr, (None, {}))[1].get(reftype, "N/A")
        if not str(rmap_name).endswith(".rmap"):
            raise KeyError(f"{base_pmap}: no rmap for ({instr}, {reftype})")
        if (instr, reftype) not in table:
            rheader, sel = _parse_mapping(_mapping_dir(crds_path) / rmap_name)
            table[(instr, reftype)] = {m: (dict(ua) if isinstance(ua, dict) else ua) for m, ua in sel.items()}
            rmap_headers[(instr, reftype)] = rheader
        sel = table[(instr, reftype)]
        if isinstance(key, tuple):
            keys = [tuple(k.upper() for k in key)]
        else:
            keys = [m for m in sel if str(key).upper() in m]
        keys = [k for k in keys if k in sel]
        if not keys:
            raise KeyError(f"{base_pmap}: no match {key!r} in {rmap_name}")
        new_ref = Path(new_ref)
        for k in keys:
            if isinstance(sel[k], str):
                raise KeyError(f"{base_pmap}: {k} is {sel[k]!r} in {rmap_name}, nothing to replace")
            sel[k] = {ua: new_ref.name for ua in sel[k]}
        to_place.append(new_ref)
    base = (psel, instr_tables)
    return _placed_then(crds_path, to_place,
                        lambda: _write_context(crds_path, table, context_name, derived_from=base_pmap,
                                               base=base, rmap_headers=rmap_headers))


# ----------------------------------------------------------------------------------------
# queries

def list_contexts(crds_path: str | Path) -> list[str]:
    """Names of the .pmap files in the cache, sorted."""
    mdir = _mapping_dir(Path(crds_path))
    if not mdir.is_dir():
        return []
    return sorted(p.name for p in mdir.glob("*.pmap"))


def locate(name: str) -> Path:
    """Path of reference file ``name`` in the configured cache.

    Raises
    ------
    FileNotFoundError
        If the file is not in the cache.
    """
    import crds

    path = Path(crds.locate_file(name, OBSERVATORY))
    if not path.exists():
        flat = _cache_path() / "references" / OBSERVATORY / name
        if flat.exists():
            return flat
        raise FileNotFoundError(f"{name}: not in the CRDS cache at {_cache_path()}")
    return path


def bestrefs(header: dict, context: str, reftypes: list[str]) -> dict[str, str]:
    """Best reference file names for an exposure header under ``context``.

    Parameters
    ----------
    header : FITS keyword dict of the exposure (e.g. ``dict(fits.getheader(uncal))``).
    context : a .pmap name present in the configured cache.
    reftypes : lower-case reftypes, e.g. ``['dark', 'mask']``.

    Returns
    -------
    dict : reftype -> file name, or ``"N/A"`` where the context says not applicable or
        does not define the reftype.

    Raises
    ------
    BestrefsError
        If crds fails, or leaves a reftype unresolved; the message names the header's
        FILENAME and the reftypes.
    """
    import crds

    fname = header.get("FILENAME", "<no FILENAME>")
    hdr = {str(k): v for k, v in dict(header).items() if k not in ("", "COMMENT", "HISTORY")}
    try:
        recs = crds.getrecommendations(hdr, context=context, observatory=OBSERVATORY, reftypes=list(reftypes))
    except Exception as exc:
        raise BestrefsError(f"{fname}: CRDS bestrefs under {context} failed: {exc}") from exc
    out = {}
    for rt in reftypes:
        val = recs.get(rt)
        if val is None:
            raise BestrefsError(f"{fname}: CRDS gave no answer for {rt} under {context}")
        sval = str(val)
        if sval.upper().startswith("NOT FOUND"):
            # "N/A": not applicable; "Unknown reference type": the context has no such
            # reftype at all (e.g. emicorr in contexts before it was delivered), so no
            # reference applies either
            if "N/A" in sval.upper() or "UNKNOWN REFERENCE TYPE" in sval.upper():
                out[rt] = "N/A"
                continue
            raise BestrefsError(f"{fname}: {rt} under {context}: {sval}")
        out[rt] = sval
    return out


def unselectable(header: dict, context: str, reftypes) -> dict[str, str]:
    """Reftypes crds cannot select for an exposure header under ``context``, with crds's reason.

    The same look-up as :func:`bestrefs` (crds's ``getrecommendations`` on the FITS keywords),
    but every failure is returned instead of raised: what jwst's prefetch would log as
    "Error determining best reference" before a job fails. A reftype the context declares
    N/A or does not define is selectable (nothing applies).

    Parameters
    ----------
    header : dict
        FITS keyword dict of the exposure.
    context : str
        A .pmap name present in the configured cache.
    reftypes : iterable of str
        Lower-case reftypes.

    Returns
    -------
    dict
        Reftype -> crds's reason (e.g. ``"parameter='META.EXPOSURE.TYPE' value='NRC_WFSS' is
        not in ['NRC_IMAGE']"``); empty when every reftype can be selected.
    """
    import crds

    reftypes = list(reftypes)
    if not reftypes:
        return {}
    hdr = {str(k): v for k, v in dict(header).items() if k not in ("", "COMMENT", "HISTORY")}
    try:
        recs = crds.getrecommendations(hdr, context=context, observatory=OBSERVATORY, reftypes=reftypes)
    except Exception as exc:   # the whole look-up failed (e.g. an instrument the context lacks)
        return {rt: " ".join(str(exc).split()) for rt in reftypes}
    out = {}
    for rt in reftypes:
        sval = str(recs.get(rt, "NOT FOUND no answer from crds"))
        upper = sval.upper()
        if upper.startswith("NOT FOUND") and "N/A" not in upper and "UNKNOWN REFERENCE TYPE" not in upper:
            reason = sval[len("NOT FOUND"):].strip()
            out[rt] = " ".join(reason.split()) or "not found"
    return out


#: parkeys that select a reference by date (useafter), not by mode
_DATE_PARKEYS = ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")


def selection_mode(header: dict, context: str, reftypes) -> tuple:
    """Return the values of ``header`` that ``context`` selects ``reftypes`` by: the exposure's mode.

    Two headers with the same mode get the same answer from :func:`unselectable` (up to the
    date parkeys of useafter matching, which are left out), so a plan over many
    associations asks crds once per mode and context. The parkeys are crds's own: the union
    of what the instrument's rmaps for these reftypes match on.

    Parameters
    ----------
    header : dict
        FITS keyword dict of the exposure (INSTRUME among them).
    context : str
        A .pmap name present in the configured cache.
    reftypes : iterable of str
        Lower-case reftypes.

    Returns
    -------
    tuple
        ``(instrument, ((parkey, value), ...))``, hashable; parkeys in datamodel form
        (``META.EXPOSURE.TYPE``).
    """
    import crds
    from crds.jwst.locate import fits_to_parkeys

    instrument = str(header.get("INSTRUME", "")).upper()
    parkeys: set[str] = set()
    try:
        imap = crds.get_cached_mapping(context).get_imap(instrument.lower())
    except Exception:
        return instrument, ()
    for rt in reftypes:
        try:
            rmap = imap.get_rmap(rt)
        except Exception:   # N/A, omitted or unknown for this instrument: selects by nothing
            continue
        parkeys.update(str(k).upper() for k in rmap.get_required_parkeys())
    values = fits_to_parkeys({k: v for k, v in header.items() if k not in ("", "COMMENT", "HISTORY")})
    return instrument, tuple((k, values.get(k)) for k in sorted(parkeys - set(_DATE_PARKEYS)))


def context_reftypes_diff(old_pmap: str, new_pmap: str) -> set[tuple[str, str]]:
    """(instrument, reftype) pairs whose selections differ between two contexts in the cache.

    Uses crds's mapping objects: for each instrument and reftype the two rmaps are compared
    with ``Mapping.difference`` (header-only changes such as name or sha1sum are ignored).
    A reftype absent from one context counts as "N/A" there, so it is reported only when
    the other context has an rmap for it. Both contexts must be in the configured cache.
    """
    import crds
    from crds.diff import remove_boring

    old = crds.get_cached_mapping(old_pmap)
    new = crds.get_cached_mapping(new_pmap)
    changed: set[tuple[str, str]] = set()
    for instr in set(old.selections) | set(new.selections):
        oi, ni = old.selections.get(instr), new.selections.get(instr)
        orefs = oi.selections if oi is not None else {}
        nrefs = ni.selections if ni is not None else {}
        for rt in set(orefs) | set(nrefs):
            o, n = orefs.get(rt, "N/A"), nrefs.get(rt, "N/A")   # absent reftype == N/A
            oname, nname = getattr(o, "name", o), getattr(n, "name", n)   # "N/A" entries are str
            if oname == nname:
                continue
            if not (hasattr(o, "difference") and hasattr(n, "difference")):
                changed.add((instr.lower(), rt.lower()))
                continue
            if remove_boring(o.difference(n, include_header_diffs=False)):
                changed.add((instr.lower(), rt.lower()))
    return changed
