"""Models: the pose encoder (``pose_encoder``), the UMT5 text side (``text``), SignT5 (``modeling``, its config in
``configuration``, its encoder side in ``encoder``, its label walks in ``labels``), InfoNCE (``losses``), and loading
a run's checkpoint (``loading``)."""
