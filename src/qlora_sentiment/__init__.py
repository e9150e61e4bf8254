"""qlora-sentiment: a DVC pipeline that fine-tunes a 4-bit quantized LLM with LoRA for sentiment classification.

Heavy libraries (torch, transformers) are imported inside functions so `import qlora_sentiment` stays cheap
and thread settings can be applied before torch loads.
"""

__version__ = "0.1.0"
