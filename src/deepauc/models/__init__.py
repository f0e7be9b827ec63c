"""The networks: timm backbones and their heads, local weight files, the index of timm names,
normalization (which picks PESG's mode) and checkpoints."""
