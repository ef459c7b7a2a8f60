"""Analyses of trained runs (``pickwise analyze``)."""
