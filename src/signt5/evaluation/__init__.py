"""Evaluation: a trained model scored on manifest splits, overall and per sign language, with result files.

The metrics themselves are in :mod:`signt5.decoding.metrics`, below training, which scores dev with them too.
"""
