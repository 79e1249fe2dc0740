"""Decoding: attention (``generate()``), greedy CTC, and joint CTC/attention, shared by training, evaluation
and inference."""
