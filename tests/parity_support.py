"""Running a jwst pipeline in one background subprocess for a parity test module.

Not a test module: ``from tests.parity_support import JwstBackground``. As in
``tests/test_calib_jwst_parity.py``: jwst runs offline under the real jwst_0541 context (its
mappings installed into a temporary CRDS cache; every reference is given as
``override_<reftype>``), in a subprocess so that its CRDS configuration cannot leak into
other tests, while the test module runs our engine meanwhile. Each case writes its products
into its own output directory, then a ``DONE`` file (and ``FAILED`` with the traceback).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import SHARED

SHARED_MAPPINGS = SHARED / "crds" / "mappings"

#: the subprocess: ``STEPS(case)`` (a Python expression over ``case``, giving the steps'
#: parameters) and ``PIPELINE`` (a jwst.pipeline class name) are filled in
_SCRIPT = textwrap.dedent(
    r'''
    import json, os, sys, traceback
    cfg = json.loads(sys.argv[1])
    from archive.crds import cache as crdscache
    # the real jwst_0541 context, offline (every reference is given by override_<reftype>)
    crdscache.install_real_context(cfg["crds_path"], cfg["mappings"])
    crdscache.configure(cfg["crds_path"])
    import jwst.pipeline
    cls = getattr(jwst.pipeline, cfg["pipeline"])
    for case in cfg["cases"]:
        try:
            r = case["refs"]
            p = cls(steps=eval(cfg["steps"], {"r": r, "case": case}))
            p.prefetch_references = False
            p.save_results = True
            p.output_dir = case["out"]
            p.run(case["uncal"])
        except BaseException:
            with open(os.path.join(case["out"], "FAILED"), "w") as fh:
                fh.write(traceback.format_exc())
        with open(os.path.join(case["out"], "DONE"), "w") as fh:
            fh.write("done")
    '''
)


class JwstBackground:
    """jwst's ``pipeline`` on every case, in one background process.

    Parameters
    ----------
    base : Path
        A temporary directory (the CRDS cache and the log go there).
    pipeline : str
        A class of ``jwst.pipeline`` (``GuiderPipeline``).
    steps : str
        A Python expression, evaluated per case with ``r`` = the case's {reftype: path},
        giving the ``steps`` parameters (overrides, skips).
    cases : dict
        name -> {"uncal": path, "refs": {reftype: path}, "out": output directory}.
    """

    def __init__(self, base: Path, pipeline: str, steps: str, cases: dict[str, dict]) -> None:
        self.cases = cases
        cfg = {"crds_path": str(base / "crds_cache"), "mappings": str(SHARED_MAPPINGS),
               "pipeline": pipeline, "steps": steps, "cases": list(cases.values())}
        for case in cases.values():
            Path(case["out"]).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("CRDS_CONTEXT", None)
        self.pipeline = pipeline
        self.log = open(base / "jwst.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, json.dumps(cfg)], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def product(self, name: str, suffix: str, timeout: float = 600) -> Path:
        """Wait for case ``name`` and return jwst's ``<root>_<suffix>.fits`` for it.

        Raises
        ------
        AssertionError
            With jwst's traceback (or log) when jwst failed on it.
        """
        case = self.cases[name]
        out = Path(case["out"])
        deadline = time.monotonic() + timeout
        while not (out / "DONE").exists() and self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"jwst {self.pipeline} timed out")
            time.sleep(0.1)
        failed = out / "FAILED"
        if failed.exists() or not (out / "DONE").exists():
            self.log.seek(0)
            tail = (failed.read_text() if failed.exists() else self.log.read())[-4000:]
            raise AssertionError(f"jwst {self.pipeline} failed on {name}:\n{tail}")
        return out / (Path(case["uncal"]).name.replace("_uncal.fits", "") + f"_{suffix}.fits")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.log.close()


def agreement(ours, theirs, err, good):
    """Fraction of ``good`` elements with |ours - theirs| <= 1e-4 |theirs| + 0.01 err (the
    detector1 parity criterion), and the number of good elements."""
    import numpy as np

    ok = np.abs(ours - theirs) <= 1e-4 * np.abs(theirs) + 0.01 * err
    return float(ok[good].mean()), int(good.sum())


def close_fraction(ours, theirs, good, rtol):
    """Fraction of ``good`` elements equal within ``rtol`` relative (atol 1e-6)."""
    import numpy as np

    return float(np.isclose(ours[good], theirs[good], rtol=rtol, atol=1e-6).mean())
