"""Build the trainer: LoRA on the (4-bit) base, TRL SFTTrainer for the generative head, Trainer for the
classifier head, a data order that survives a restart. Hyper-parameters come only from the Params object."""

from __future__ import annotations

import logging
from pathlib import Path

from qlora_sentiment.config import Params
from qlora_sentiment.core.errors import ConfigError
from qlora_sentiment.model.loading import peft_quietly
from qlora_sentiment.model.prompts import PromptFormatter
from qlora_sentiment.model.scoring import remember_load_dtypes
from qlora_sentiment.model.record import RECORD_FILE

log = logging.getLogger(__name__)

# Paged optimizers page state to CPU memory through CUDA; without CUDA bitsandbytes runs the plain kind.
CPU_OPTIMIZER = {"paged_adamw_8bit": "adamw_8bit", "paged_adamw_32bit": "adamw_torch"}


def effective_optimizer(requested: str, cuda: bool) -> str:
    if cuda or requested not in CPU_OPTIMIZER:
        return requested
    used = CPU_OPTIMIZER[requested]
    log.warning("train.optimizer: %s needs CUDA to page optimizer state; on this CPU the run uses %s instead "
                "(same update rule, no paging). The choice is recorded in the adapter's %s.",
                requested, used, RECORD_FILE)
    return used


def lora_layers(lora, config) -> list[int] | None:
    """The blocks LoRA goes on, checked against the model's config before any weight is loaded."""
    total = getattr(config, "num_hidden_layers", None)
    if lora.last_n_layers is not None and total is not None and lora.last_n_layers > total:
        raise ConfigError(f"params: lora.last_n_layers: {lora.last_n_layers} > the model's {total} layers")
    # A rank at or above the layer width is no low-rank update (and multiplies memory): refuse it up front.
    width = getattr(config, "hidden_size", None)
    if width is not None and lora.r >= width:
        raise ConfigError(f"params: lora.r: {lora.r} is not below the model's hidden size {width}; use a rank such "
                          "as 8, 16 or 64")
    if lora.last_n_layers is None:
        return None
    return list(range(total - lora.last_n_layers, total))


def add_lora(model, params: Params):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    checkpointing = params.train.gradient_checkpointing
    if params.quantization.load_in_4bit and params.runtime.strategy != "fsdp":
        # Casts norms to fp32 and enables input grads so LoRA trains through frozen 4-bit layers. The dtypes it
        # replaces are remembered: validation is scored in them, as evaluate scores (model/scoring.py).
        remember_load_dtypes(model)
        with peft_quietly():
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    else:
        # FSDP flattens each block's parameters into one tensor of one dtype: no fp32 upcast of the norms there.
        if checkpointing and hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
        elif checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    lora = params.lora
    config = LoraConfig(
        layers_to_transform=lora_layers(lora, model.config),
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM" if params.model.head == "generative" else "SEQ_CLS", bias="none",
    )
    with peft_quietly():
        return get_peft_model(model, config)


def keep_trainable_fp32(model) -> None:
    """Trainable weights (LoRA, a classifier's score layer) stay float32 whatever the compute dtype: they are mixed
    precision's master weights, and bf16/fp16 autocast runs their matmuls in the half dtype anyway.

    TRL's SFTTrainer casts QLoRA adapter weights to bfloat16: bf16 weights round away small updates, on CPUs
    without bf16 instructions they are several times slower, and fp16 mixed precision cannot unscale them.
    """
    import torch

    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.to(torch.float32)


def checkpointing_args(enabled: bool, kwargs: dict) -> dict:
    """Activation checkpointing under transformers >= 5.24's names (`gradient_checkpointing*` there are deprecated
    aliases that print a FutureWarning), under the old names for earlier releases."""
    from dataclasses import fields

    from transformers import TrainingArguments

    new = "activation_checkpointing" in {f.name for f in fields(TrainingArguments)}
    name = "activation_checkpointing" if new else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": kwargs}


def trainer_args(params: Params, output_dir: Path, optimizer: str) -> dict:
    import torch

    t, cuda = params.train, torch.cuda.is_available()
    dtype = params.quantization.compute_dtype
    processes = params.runtime.num_processes
    if t.batch_size % processes:
        raise ConfigError(f"params: train.batch_size: {t.batch_size} does not split over runtime.num_processes "
                          f"({processes}); use a multiple of it (the batch is the global one, summed over processes)")
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs, max_steps=t.max_steps,
        # train.batch_size is global: each of N processes takes 1/N of it, so N changes speed, not the recipe.
        per_device_train_batch_size=t.batch_size // processes, per_device_eval_batch_size=params.eval.batch_size,
        ddp_find_unused_parameters=False,  # frozen 4-bit layers get no gradient by design
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
        optim=optimizer, seed=params.seed, data_seed=params.seed,
        logging_steps=t.logging_steps, save_strategy="steps", save_steps=t.save_steps, save_total_limit=2,
        eval_strategy="no", report_to="none", disable_tqdm=True,
        train_sampling_strategy=t.sampling,
        # FSDP-QLoRA recomputes through reentrant checkpoints (PEFT's recipe); otherwise the non-reentrant kind
        **checkpointing_args(t.gradient_checkpointing, {"use_reentrant": params.runtime.strategy == "fsdp"}),
        # bf16 mixed precision on CPUs too (torch.autocast("cpu")): the 4-bit layers then compute in bf16, and any
        # full-precision layer (the classifier's score) takes bf16 inputs. fp16 needs a GPU (a grad scaler).
        bf16=dtype == "bfloat16", fp16=cuda and dtype == "float16", use_cpu=not cuda,
        dataloader_pin_memory=cuda,
    )


def seed_per_epoch(sampler, seed: int):
    """Make the length-grouped order a function of (seed, epoch) alone.

    transformers' LengthGroupedSampler draws from the global RNG, whose state at an epoch's start depends on every
    dropout mask before it, so a run resumed from a checkpoint would see another order. The Trainer calls
    `set_epoch` on the sampler at each epoch (also when resuming), which reseeds a private generator.
    """
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    if isinstance(sampler, LengthGroupedSampler):
        sampler.generator = torch.Generator()
        sampler.generator.manual_seed(seed)
        sampler.set_epoch = lambda epoch: sampler.generator.manual_seed(seed + epoch)
    return sampler


def resumable(trainer_class):
    """A Trainer subclass whose data order survives a restart (random sampling already does: accelerate
    seeds it per epoch)."""

    class Resumable(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            return seed_per_epoch(super()._get_train_sampler(train_dataset), self.args.data_seed)

    return Resumable


def _generative_trainer(model, tokenizer, params, train_rows, val_rows, args):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    formatter = PromptFormatter(tokenizer, params.prompt_template, params.data.labels, params.train.max_length,
                                params.prompt.chat_template)

    def to_dataset(rows):
        # pre-tokenized (the prompt's token-level template, model/prompts.py): TRL takes input_ids and
        # completion_mask as they are, so training sees the ids scoring and the export use
        aspects = [r["aspect"] for r in rows] if formatter.has_aspect else None
        examples = formatter.training_examples([r["text"] for r in rows], [r["label"] for r in rows], aspects)
        return Dataset.from_dict({key: [e[key] for e in examples] for key in ("input_ids", "completion_mask")})

    config = SFTConfig(**args, max_length=params.train.max_length, completion_only_loss=True, packing=False)
    return resumable(SFTTrainer)(model=model, args=config, train_dataset=to_dataset(train_rows),
                                 eval_dataset=to_dataset(val_rows), processing_class=tokenizer)


def _classifier_trainer(model, tokenizer, params, train_rows, val_rows, args):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    index = {name: i for i, name in enumerate(params.data.labels)}

    def to_dataset(rows):
        texts = [r["text"] for r in rows]
        if rows and "aspect" in rows[0]:  # a sentence pair, as the scorer reads it: the text cut, never the aspect
            enc = tokenizer(texts, [r["aspect"] for r in rows], truncation="only_first",
                            max_length=params.train.max_length)
            # the scorer feeds ids and mask only: an encoder's segment ids (BERT) are left at 0 in both
            enc = {key: enc[key] for key in ("input_ids", "attention_mask")}
        else:
            enc = tokenizer(texts, truncation=True, max_length=params.train.max_length)
        return Dataset.from_dict({**enc, "labels": [index[r["label"]] for r in rows]})

    # The Trainer multiplies a loss-kwargs model's loss by the process count, expecting it to be summed over the
    # global token count; a sequence-classification loss is a per-example mean, so with N processes the loss (and
    # its gradient, before clipping) came out N times too large (measured: 2 processes logged 2x the loss).
    args = dict(args, average_tokens_across_devices=False)
    return resumable(Trainer)(model=model, args=TrainingArguments(**args), train_dataset=to_dataset(train_rows),
                   eval_dataset=to_dataset(val_rows), data_collator=DataCollatorWithPadding(tokenizer),
                   processing_class=tokenizer)


def build_trainer(model, tokenizer, params: Params, train_rows: list[dict], val_rows: list[dict], args: dict):
    build = _generative_trainer if params.model.head == "generative" else _classifier_trainer
    return build(model, tokenizer, params, train_rows, val_rows, args)
