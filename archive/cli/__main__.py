"""``python -m archive.cli``: the ``archive`` command."""
from . import app

app()
