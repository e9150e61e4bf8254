"""The Python API: `SentimentAnalyzer` (analyzer.py) and the text rules every entry point shares (validation.py)."""
