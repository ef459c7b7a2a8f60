"""Miniature reproductions of the papers' claims (``pickwise reproduce TOPIC``)."""
