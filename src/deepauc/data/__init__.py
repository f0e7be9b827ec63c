"""The data: CheXpert's CSV and label codes, label policies, patient splits, the preprocess
step, decoded-image caches, the image datasets and augmentation, and the synthetic cohort."""
