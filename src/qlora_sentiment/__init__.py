# output-neutral: only re-exports SentimentAnalyzer, lazily, for Python API users; no stage reaches it
"""qlora-sentiment: a DVC pipeline that fine-tunes a 4-bit quantized LLM with LoRA for sentiment classification.

Heavy libraries (torch, transformers) are imported inside functions so `import qlora_sentiment` stays cheap
and thread settings can be applied before torch loads.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so `import qlora_sentiment` does not pull in torch.
    if name == "SentimentAnalyzer":
        from qlora_sentiment.api.analyzer import SentimentAnalyzer

        return SentimentAnalyzer
    raise AttributeError(name)
