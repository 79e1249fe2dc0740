"""Decoding: attention (``generate()``), greedy CTC, and joint CTC/attention; the text metrics that score it;
and the Predictor (a checkpoint with its preprocessing), shared by training, evaluation and inference."""
