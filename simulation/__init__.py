"""Simulated JWST inputs: raw exposures, rate files, sky scenes and the reference files that calibrate them."""
