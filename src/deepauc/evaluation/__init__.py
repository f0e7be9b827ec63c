"""Scoring what was trained: statistics and their CIs, p-value reporting, cautions, collapse and
rate diagnostics, ensembles, the summary tables and the figures."""
