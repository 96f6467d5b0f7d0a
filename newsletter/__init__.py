"""newsletter: write an issue as YAML, render it, preview it, send it exactly once."""

__version__ = "0.1.0"
