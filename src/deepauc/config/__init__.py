"""One home for configuration: config layers (``extends``), every check of a config, the
settings dataclasses and job specs, and the learning-rate grids and labels."""
