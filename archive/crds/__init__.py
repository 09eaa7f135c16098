"""CRDS: the local, offline CRDS cache, and what the catalog records of it.

``cache`` configures, fills and asks the local cache; ``references`` records in the
catalog the contexts and the one in use, reference files with their checksums, and the
best references of each exposure.

Selection is always the ``crds`` library's own. Inside this package ``import crds`` means
that library (imports are absolute); the package's own modules import each other
relatively.
"""
