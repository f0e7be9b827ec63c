"""Training, split by concern.

- ``stages``: stage 1 (warm-up) and stage 2 (fine-tune per disease and method) built into jobs;
  ``run_spec`` runs a rule's typed spec.
- ``fit``: the one loop every job runs; ``job``: what a job is.
- ``runtime``: device, threads, DDP rank, autocast; ``loaders``: loaders, samplers, GPU placement.
- ``resume``: resume files; ``scoring``: a model's scores for a loader.

The methods themselves live in ``deepauc.methods``, one registry entry each.
"""
