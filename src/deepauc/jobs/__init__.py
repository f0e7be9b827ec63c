"""How workflow jobs run, apart from what they compute: logs, GPU claims, processes per job
and the launch of one process or of DDP ranks."""
