"""signt5: sign language (pose keypoints) to text with a GCN + RoPE pose encoder and UMT5."""

__version__ = "0.1.0"
