"""Inference images: validation, content-addressed storage and thumbnails."""
