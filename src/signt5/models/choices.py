"""The decoder's option values, apart from the model so that configs and the command line load without torch."""

POSITIONS = ("sinusoidal", "both_ends", "ctc", "none")  # both_ends: also from the end; ctc: counted in CTC emissions
GUIDES = ("ctc", "diagonal")  # where guided attention sends each token: its CTC-aligned frames | the diagonal
DECODER_MEMORIES = ("frames", "ctc_segments")
