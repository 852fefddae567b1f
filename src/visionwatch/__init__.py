"""visionwatch: self-hosted monitoring for computer-vision models in production."""

__version__ = "0.1.0"
