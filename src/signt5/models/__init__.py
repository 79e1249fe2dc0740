"""Models: the pose encoder (``pose_encoder``), the UMT5 text side (``text``), SignT5 (``modeling``), InfoNCE
(``losses``), and loading a run's checkpoint (``loading``)."""
