"""Side-by-side speed and memory measurements of ebmguide; run ``python -m benchmarks.run``.

The package is not installed with ebmguide: run it from a clone (``make bench`` builds its own
environment, ``.venv-bench``, with torchebm and ebmkit for the comparison rows).
"""
