"""Pre-forgettable classifiers (arXiv 2509.15230): one prompt token per class, forgetting = deleting it.

Modules: `config` (the dataclass saved as config.json), `model` (ViT + prompt bank + heads), `lora`, `backbones`
(tiny-vit, open_clip, torchvision), `data`, `train` (the paper's two-pass loss, oracle retraining), `checkpoint`
(atomic folders), `forget` (on-disk deletion), `audit` (checks against a retrained oracle), `cli` (`protect model`).
"""
