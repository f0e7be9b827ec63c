"""Using trained models: a predictor as one module, its export (safetensors, JSON card,
TorchScript), scoring new images, the model card and Grad-CAM saliency."""
