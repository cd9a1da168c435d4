"""Training data: dataset folders (datasets), captions from finding labels (captions), prompt hints
about findings (findings)."""
