"""CRDS: the local, offline CRDS cache (``cache``) and what the catalog records of it:
contexts and the one in use, reference files with their checksums, and best references
per exposure (``references``).

Selection is always the ``crds`` library's own. Inside this package ``import crds`` means
that library (imports are absolute); the package's own modules import each other
relatively.
"""
