"""Associations: the jwst package's generator run on pools built from the catalog.

``generator`` wraps jwst's association generator exactly as ``asn_generate`` runs it,
``catalog_pool`` builds a program's pool from the catalog, and ``associate`` (the work of
``archive associate``) runs one through the other and stores the result with its members.
"""
