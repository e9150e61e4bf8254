"""The params: typed schema (schema.py) and loading with one-line errors (load.py). Values live in conf/."""

from qlora_sentiment.config.load import compose, load_params, params_from_dict, to_dict, to_yaml
from qlora_sentiment.config.schema import (LABEL_SETS, CleanConfig, DataConfig, EvalConfig, LoraConfig, ModelConfig,
                                           Params, PromptConfig, QuantizationConfig, RuntimeConfig, SplitConfig,
                                           TrainConfig)

__all__ = ["compose", "load_params", "params_from_dict", "to_dict", "to_yaml", "LABEL_SETS", "CleanConfig",
           "DataConfig", "EvalConfig", "LoraConfig", "ModelConfig", "Params", "PromptConfig", "QuantizationConfig",
           "RuntimeConfig", "SplitConfig", "TrainConfig"]
