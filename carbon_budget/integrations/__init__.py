"""Callbacks that put a training loop of Lightning or Hugging Face transformers under its energy budget."""
