"""The reference pipeline: digits data, MLP/CNN models, training (also DDP under torchrun), distillation, ONNX/int8
export and a Hugging Face model card. It uses the `carbon_budget` plugin only through its public API, exactly as
a team's own pipeline would, and is never installed: its stages run from this checkout (`python -m stages.X`).
"""
