"""Fine-tune LoRA adapters on a (4-bit) base model: TRL SFTTrainer for the generative head, Trainer for the
classifier head. Hyper-parameters come only from the Params object."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from .base_model import BaseRef
from .checkpoints import fingerprint, resume_point
from .config import Params
from .errors import ConfigError
from .io import write_json
from .modeling import load_model, load_tokenizer, save_tokenizer
from .prompts import PromptFormatter, completion

log = logging.getLogger(__name__)

META_FILE = "qlora_sentiment.json"
# Per-run timings would make the logged curves differ between identical runs; the Trainer's train_loss and TRL's
# num_tokens count only the steps since a resume (we log the mean of the logged losses instead).
UNSTABLE_LOG_KEYS = ("runtime", "per_second", "total_flos", "train_loss", "num_tokens")
# Paged optimizers page state to CPU memory through CUDA; without CUDA bitsandbytes runs the plain kind.
CPU_OPTIMIZER = {"paged_adamw_8bit": "adamw_8bit", "paged_adamw_32bit": "adamw_torch"}


@dataclass
class TrainResult:
    meta: dict
    model: object
    tokenizer: object


def mean_logged_loss(log_history: list[dict]) -> float | None:
    """Mean of the logged training losses: the same whether or not the run was resumed."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else None


def training_params(params: Params) -> dict:
    """Everything that changes the trained weights (threads and paths do not)."""
    full = dataclasses.asdict(params)
    return {"seed": full["seed"], "model": full["model"], "quantization": full["quantization"], "lora": full["lora"],
            "prompt": full["prompt"], "train": full["train"], "labels": full["data"]["labels"],
            "eval_batch_size": full["eval"]["batch_size"]}


def effective_optimizer(requested: str, cuda: bool) -> str:
    if cuda or requested not in CPU_OPTIMIZER:
        return requested
    used = CPU_OPTIMIZER[requested]
    log.warning("train.optimizer: %s needs CUDA to page optimizer state; on this CPU the run uses %s instead "
                "(same update rule, no paging). The choice is recorded in the adapter's %s.", requested, used, META_FILE)
    return used


def live_callback(live_dir: Path):
    """Training curves into DVCLive files that dvc.yaml declares (the Live object never edits dvc.yaml)."""
    from dvclive import Live
    from transformers import TrainerCallback

    class LiveLogger(TrainerCallback):
        def __init__(self):
            self.live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)

        def on_train_begin(self, args, state, control, **kwargs):
            # Resumed from a checkpoint: its log history holds the curve so far; DVC cleared the old files.
            for entry in state.log_history:
                if state.is_world_process_zero and "step" in entry:
                    self._log(entry["step"], entry)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            self._log(state.global_step, logs)

        def _log(self, step, logs):
            self.live.step = step
            for key, value in logs.items():
                if key == "step":
                    continue
                if isinstance(value, (int, float)) and not any(k in key for k in UNSTABLE_LOG_KEYS):
                    name = key[5:] if key.startswith("eval_") else key
                    self.live.log_metric(f"{'eval' if key.startswith('eval_') else 'train'}/{name}", value)
            self.live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            self.live.end()

    return LiveLogger()


def add_lora(model, params: Params):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if params.quantization.load_in_4bit:
        # Casts norms to fp32 and enables input grads so LoRA trains through frozen 4-bit layers.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.train.gradient_checkpointing)
    elif params.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = params.lora
    layers = None
    if lora.last_n_layers is not None:
        total = model.config.num_hidden_layers
        if lora.last_n_layers > total:
            raise ConfigError(f"params: lora.last_n_layers: {lora.last_n_layers} > the model's {total} layers")
        layers = list(range(total - lora.last_n_layers, total))
    config = LoraConfig(
        layers_to_transform=layers,
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM" if params.model.head == "generative" else "SEQ_CLS", bias="none",
    )
    return get_peft_model(model, config)


def set_adapter_dtype(model, compute_dtype: str) -> None:
    """Keep LoRA weights in float32 unless bfloat16 compute was asked for.

    TRL's SFTTrainer casts QLoRA adapter weights to bfloat16 whatever the compute dtype: on CPUs without bf16
    instructions that is several times slower, and fp16 mixed precision cannot unscale bf16/fp16 gradients.
    """
    import torch

    dtype = torch.bfloat16 if compute_dtype == "bfloat16" else torch.float32
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.to(dtype)


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
        gradient_checkpointing=t.gradient_checkpointing, train_sampling_strategy=t.sampling,
        bf16=cuda and dtype == "bfloat16", fp16=cuda and dtype == "float16", use_cpu=not cuda,
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


def _generative_trainer(model, tokenizer, params, train_rows, val_rows, args, callbacks):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    formatter = PromptFormatter(tokenizer, params.prompt.template, params.data.labels, params.train.max_length)

    def to_dataset(rows):
        prompts = formatter.prompts([r["text"] for r in rows])
        return Dataset.from_dict({"prompt": prompts, "completion": [completion(r["label"]) for r in rows]})

    config = SFTConfig(**args, max_length=params.train.max_length, completion_only_loss=True, packing=False)
    return resumable(SFTTrainer)(model=model, args=config, train_dataset=to_dataset(train_rows), eval_dataset=to_dataset(val_rows),
                      processing_class=tokenizer, callbacks=callbacks)


def _classifier_trainer(model, tokenizer, params, train_rows, val_rows, args, callbacks):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    index = {name: i for i, name in enumerate(params.data.labels)}

    def to_dataset(rows):
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=params.train.max_length)
        return Dataset.from_dict({**enc, "labels": [index[r["label"]] for r in rows]})

    return resumable(Trainer)(model=model, args=TrainingArguments(**args), train_dataset=to_dataset(train_rows),
                   eval_dataset=to_dataset(val_rows), data_collator=DataCollatorWithPadding(tokenizer),
                   processing_class=tokenizer, callbacks=callbacks)


def validation_scores(model, tokenizer, params: Params, val_rows: list[dict]) -> dict:
    """Label accuracy and macro F1 on the validation split, scored as evaluate scores the test split.

    The validation loss says how well the answer tokens are predicted; these say how well the labels are, and
    are what a hyper-parameter search should pick by (the test split stays unseen until evaluate).
    """
    from .metrics import classification_metrics
    from .scoring import LabelScorer

    labels = params.data.labels
    scorer = LabelScorer(model, tokenizer, params.model.head, labels, params.prompt.template, params.train.max_length)
    proba = scorer.predict_proba([r["text"] for r in val_rows], batch_size=params.eval.batch_size)
    scores = classification_metrics([r["label"] for r in val_rows], proba, labels)
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro"]["f1"]}


def save_adapter(model, tokenizer, out: Path, meta: dict) -> None:
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    # PEFT writes target_modules from a set, in hash-seed order: sort it so identical runs give identical files.
    config_file = out / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_json(out / META_FILE, meta)


def train(params: Params, ref: BaseRef, train_rows: list[dict], val_rows: list[dict],
          out: Path, live_dir: Path, checkpoint_dir: Path) -> TrainResult:
    """Train and save the adapter into `out`; returns the summary written beside it and the model."""
    import torch
    from accelerate import PartialState

    tokenizer = load_tokenizer(ref)
    model = load_model(ref, params.model.head, params.data.labels, params.quantization, tokenizer.pad_token_id)
    model = add_lora(model, params)
    optimizer = effective_optimizer(params.train.optimizer, torch.cuda.is_available())
    args = trainer_args(params, checkpoint_dir, optimizer)
    build = _generative_trainer if params.model.head == "generative" else _classifier_trainer
    state = PartialState(cpu=not torch.cuda.is_available())
    main = state.is_main_process  # with N processes, only rank 0 logs and writes
    callback = live_callback(live_dir) if main else None
    # The Trainer evaluates in file order, padding each batch to its longest row: shortest-first batches pad less.
    eval_rows = sorted(val_rows, key=lambda r: len(r["text"]))
    trainer = build(model, tokenizer, params, train_rows, eval_rows, args, [callback] if main else [])
    set_adapter_dtype(trainer.model, params.quantization.compute_dtype)
    run_id = fingerprint(training_params(params), ref.info, train_rows, val_rows)
    with state.main_process_first():  # rank 0 tidies the checkpoint folder, the others then read the same answer
        start = resume_point(checkpoint_dir, run_id, tidy=main)
    result = trainer.train(resume_from_checkpoint=start)
    train_loss = mean_logged_loss(trainer.state.log_history)
    # The evaluation loss is logged through the callback; end() was already called, so reopen the step.
    final_eval = trainer.evaluate()  # every process takes part: it is sharded
    if not main:
        return TrainResult({"global_step": result.global_step, "train_loss": train_loss}, trainer.model, tokenizer)
    if train_loss is not None:
        callback.live.log_metric("train/train_loss", train_loss)
    validation = validation_scores(trainer.model, tokenizer, params, val_rows)
    for name, value in validation.items():
        callback.live.log_metric(f"validation/{name}", value, plot=False)
    callback.live.make_summary()
    trainable, total = model.get_nb_trainable_parameters()
    meta = {
        "head": params.model.head,
        "labels": params.data.labels,
        "prompt_template": params.prompt.template,
        "max_length": params.train.max_length,
        "quantization": dataclasses.asdict(params.quantization),
        "base_model": ref.info,
        "optimizer": {"requested": params.train.optimizer, "used": optimizer},
        "trainable_parameters": trainable,
        "total_parameters": total,
        "global_step": result.global_step,
        "processes": state.num_processes,  # data-parallel processes that trained it (global batch unchanged)
        "train_loss": train_loss,
        "eval_loss": final_eval.get("eval_loss"),
        "validation": validation,
    }
    save_adapter(trainer.model, tokenizer, out, meta)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return TrainResult(meta, trainer.model, tokenizer)
