"""Simulation inputs: circuit loading and preparation (:mod:`.circuit`), the noise model (:mod:`.noise`)."""
