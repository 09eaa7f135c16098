"""Reprocessing: what the catalog owes and why.

``stale`` computes exactly which products a new CRDS context makes stale, ``campaigns``
opens and closes the campaigns that remake them (a new context, new software),
``planner`` decides which jobs are owed and sends them, ``whatif`` estimates what a
campaign will remake and cost before it runs, and ``status`` reports its progress.
"""
