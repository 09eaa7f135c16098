"""PNG previews and thumbnails of products: pure image work, no database.

An image product (``_rate``, ``_rateints``, ``_cal``, ``_calints``, ``_i2d``, ``_crf``,
``_s2d`` ...) is drawn from its SCI array with the astropy.visualization normalisation
the archives use for quick looks: a ZScale interval (IRAF's zscale, Tody 1986, as
``astropy.visualization.ZScaleInterval`` implements it) and an asinh stretch (Lupton et
al. 2004, ``AsinhStretch``). Pixels whose DQ has DO_NOT_USE are left out of the interval
and drawn in a flat mask colour. A cube (one plane per integration) is shown as the
median over its integrations. A ``_x1d`` product (a table of WAVELENGTH and FLUX per
extracted spectrum) is drawn as a plotted spectrum.

Each product gets two files beside it, named as MAST names its quick looks:
``<stem>.png`` (at most :data:`PREVIEW_MAX` pixels on a side) and ``<stem>_thumb.png``
(at most :data:`THUMB_MAX`). Files are written to a temporary name and renamed, so a
reader never sees half a PNG.
"""
from __future__ import annotations

import math
import os
import pathlib
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from calib import dqflags

__all__ = ["IMAGE_SUFFIXES", "SPECTRUM_SUFFIXES", "PREVIEW_MAX", "THUMB_MAX", "Preview", "preview_kind",
           "normalise", "write_previews"]

#: product suffixes drawn as images (a 2-D spectrum, _s2d, is an image too)
IMAGE_SUFFIXES = frozenset({"rate", "rateints", "cal", "calints", "i2d", "crf", "s2d", "s3d", "bsub", "bsubints"})
#: product suffixes drawn as a plotted spectrum
SPECTRUM_SUFFIXES = frozenset({"x1d", "x1dints", "c1d"})
#: largest side of a preview, pixels
PREVIEW_MAX = 1024
#: largest side of a thumbnail, pixels
THUMB_MAX = 192
#: RGBA colour of DO_NOT_USE pixels (a dark red, apart from the grey scale)
MASK_RGBA = (0.55, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Preview:
    """One PNG written for a product.

    Attributes
    ----------
    kind : str
        ``preview`` or ``thumbnail``.
    path : pathlib.Path
        The PNG file.
    width, height : int
        Its size in pixels.
    """

    kind: str
    path: pathlib.Path
    width: int
    height: int


def preview_kind(suffix: str) -> str | None:
    """Return how a product of this suffix is drawn.

    Parameters
    ----------
    suffix : str
        The product's jwst suffix (``rate``, ``i2d``, ``x1d`` ...).

    Returns
    -------
    str or None
        ``image``, ``spectrum``, or None for a product that has no preview (a ramp, a
        catalog, an association).
    """
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in SPECTRUM_SUFFIXES:
        return "spectrum"
    return None


def normalise(sci: np.ndarray, dq: np.ndarray | None = None) -> np.ndarray:
    """Map an image to [0, 1] with a ZScale interval and an asinh stretch, masking DO_NOT_USE.

    Parameters
    ----------
    sci : numpy.ndarray, shape (ny, nx) or (nint, ny, nx), float
        The SCI array (any unit: DN/s, MJy/sr); a cube is reduced to the median of its
        planes.
    dq : numpy.ndarray of uint32, same shape as ``sci``, optional
        The DQ array; pixels with DO_NOT_USE (bit value 1) set are masked.

    Returns
    -------
    numpy.ndarray, shape (ny, nx), float64
        Values in [0, 1]; NaN where the pixel is masked or not finite.

    Raises
    ------
    ValueError
        If ``sci`` is not 2-D or 3-D, or ``dq`` has another shape.

    Notes
    -----
    ZScale: Tody (1986), IRAF ``display``; asinh stretch: Lupton, Blanton et al. (2004,
    PASP 116, 133); both as implemented in ``astropy.visualization``.
    """
    from astropy.visualization import AsinhStretch, ZScaleInterval

    sci = np.asarray(sci, dtype=np.float64)
    if sci.ndim not in (2, 3):
        raise ValueError(f"a preview needs a 2-D image or a 3-D cube, got shape {sci.shape}")
    bad = ~np.isfinite(sci)
    if dq is not None:
        dq = np.asarray(dq)
        if dq.shape != sci.shape:
            raise ValueError(f"DQ shape {dq.shape} differs from SCI shape {sci.shape}")
        bad |= (dq.astype(np.uint32) & np.uint32(dqflags.DO_NOT_USE)) != 0
    data = np.where(bad, np.nan, sci)
    if data.ndim == 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            data = np.nanmedian(data, axis=0)
    good = np.isfinite(data)
    out = np.full(data.shape, np.nan)
    if not good.any():
        return out
    lo, hi = ZScaleInterval().get_limits(data[good])
    if not hi > lo:
        lo, hi = float(np.min(data[good])), float(np.max(data[good]))
    scaled = np.clip((data[good] - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros(good.sum())
    out[good] = AsinhStretch()(scaled, clip=True)
    return out


def _reduce(img: np.ndarray, largest: int) -> np.ndarray:
    """Block-average an image (NaN-aware) so that neither side exceeds ``largest``."""
    factor = max(1, math.ceil(max(img.shape) / largest))
    if factor == 1:
        return img
    ny, nx = (-(-img.shape[0] // factor)) * factor, (-(-img.shape[1] // factor)) * factor
    padded = np.full((ny, nx), np.nan)
    padded[: img.shape[0], : img.shape[1]] = img
    blocks = padded.reshape(ny // factor, factor, nx // factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks wholly masked stay masked
        return np.nanmean(blocks, axis=(1, 3))


def _rgba(img: np.ndarray) -> np.ndarray:
    """Grey scale RGBA (ny, nx, 4) of a [0, 1] image, NaN drawn in the mask colour, y up."""
    grey = np.nan_to_num(img, nan=0.0)
    rgba = np.empty(img.shape + (4,))
    rgba[..., 0] = rgba[..., 1] = rgba[..., 2] = grey
    rgba[..., 3] = 1.0
    rgba[~np.isfinite(img)] = MASK_RGBA
    return rgba[::-1]  # FITS row 0 is the bottom of the picture


def _save_atomic(write, final: pathlib.Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp.png", dir=final.parent)
    mask = os.umask(0o022)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)  # mkstemp makes 0600; a preview follows the process umask, as products do
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _image_previews(path: pathlib.Path, stem: pathlib.Path) -> list[Preview]:
    import matplotlib.image as mpimg
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        names = [h.name for h in hdul]
        if "SCI" not in names:
            raise ValueError(f"{path}: no SCI extension to draw")
        sci_idx = names.index("SCI")
        sci = hdul[sci_idx].data
        ver = hdul[sci_idx].ver
        dq = next((h.data for h in hdul if h.name == "DQ" and h.ver == ver), None)
        if sci is None:
            raise ValueError(f"{path}: SCI extension is empty")
        if dq is not None and dq.shape != sci.shape:
            dq = None
        if sci.ndim == 4:
            raise ValueError(f"{path}: SCI has 4 axes (a ramp); previews are drawn from images")
        img = normalise(sci, dq)
    out = []
    for kind, largest, name in (("preview", PREVIEW_MAX, f"{stem}.png"), ("thumbnail", THUMB_MAX,
                                                                           f"{stem}_thumb.png")):
        rgba = _rgba(_reduce(img, largest))
        final = pathlib.Path(name)
        _save_atomic(lambda tmp, rgba=rgba: mpimg.imsave(tmp, rgba, format="png"), final)
        out.append(Preview(kind, final, rgba.shape[1], rgba.shape[0]))
    return out


def _spectrum_previews(path: pathlib.Path, stem: pathlib.Path) -> list[Preview]:
    from astropy.io import fits
    from matplotlib.figure import Figure

    spectra = []
    with fits.open(path, memmap=False) as hdul:
        for h in hdul:
            if h.name != "EXTRACT1D" or h.data is None:
                continue
            cols = {c.upper() for c in h.columns.names}
            if not {"WAVELENGTH", "FLUX"} <= cols:
                continue
            wl = np.asarray(h.data["WAVELENGTH"], dtype=float).ravel()
            fl = np.asarray(h.data["FLUX"], dtype=float).ravel()
            if "DQ" in cols:
                dq = np.asarray(h.data["DQ"]).ravel().astype(np.uint32)
                fl = np.where(dq & np.uint32(dqflags.DO_NOT_USE), np.nan, fl)
            spectra.append((wl, fl, h.columns["FLUX"].unit or ""))
    if not spectra:
        raise ValueError(f"{path}: no EXTRACT1D table with WAVELENGTH and FLUX to plot")
    out = []
    for kind, size, dpi, name in (("preview", (8.0, 4.0), 100, f"{stem}.png"),
                                  ("thumbnail", (1.92, 0.96), 100, f"{stem}_thumb.png")):
        fig = Figure(figsize=size, dpi=dpi)
        ax = fig.add_subplot()
        for wl, fl, _unit in spectra:
            ax.plot(wl, fl, lw=0.8 if kind == "preview" else 0.5)
        if kind == "preview":
            ax.set_xlabel("wavelength (um)")
            ax.set_ylabel(f"flux ({spectra[0][2]})" if spectra[0][2] else "flux")
            fig.tight_layout()
        else:
            ax.set_axis_off()
        final = pathlib.Path(name)
        _save_atomic(lambda tmp, fig=fig: fig.savefig(tmp, format="png"), final)
        out.append(Preview(kind, final, int(size[0] * dpi), int(size[1] * dpi)))
    return out


def write_previews(product: str | os.PathLike, suffix: str) -> list[Preview]:
    """Write the preview and thumbnail PNGs of one product beside it.

    Parameters
    ----------
    product : str or path-like
        The product FITS file (``<root>_<suffix>.fits``).
    suffix : str
        Its jwst suffix, which says how it is drawn (:func:`preview_kind`).

    Returns
    -------
    list of Preview
        The preview and the thumbnail; empty for a suffix that has no preview.

    Raises
    ------
    ValueError
        If the file has nothing to draw (no SCI image, no EXTRACT1D table), naming it.
    OSError
        If the file cannot be read or the PNGs cannot be written (no partial PNG remains).
    """
    kind = preview_kind(suffix)
    if kind is None:
        return []
    path = pathlib.Path(product)
    stem = path.with_suffix("") if path.suffix == ".fits" else path
    if kind == "image":
        return _image_previews(path, stem)
    return _spectrum_previews(path, stem)
