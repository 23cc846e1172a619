"""Hydra's config groups. A package (hwbench.conf) only so that a wheel carries them: see pyproject.toml."""
