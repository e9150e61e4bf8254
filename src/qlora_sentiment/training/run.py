"""`train()`: fit LoRA on the base model and return what was learned; the train stage writes it out.

Nothing here writes outputs: the adapter, the curves and the record are saved by the stage (training/outputs.py),
so an interrupted run leaves no half-written output. Only the Trainer's resumable checkpoints are written, into
a scratch folder that is not a DVC output.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from qlora_sentiment.config import Params
from qlora_sentiment.core.cpu_matmul import cpu_matmul
from qlora_sentiment.model.base import BaseRef
from qlora_sentiment.model.loading import load_model, load_tokenizer
from qlora_sentiment.model.record import ModelRecord, OptimizerUse
from qlora_sentiment.training.checkpoints import fingerprint, resume_point
from qlora_sentiment.training.trainer import (add_lora, build_trainer, effective_optimizer, lora_layers,
                                              keep_trainable_fp32, trainer_args)


@dataclass
class TrainResult:
    record: ModelRecord | None  # None on the non-zero ranks of a data-parallel run (they write nothing)
    model: object
    tokenizer: object
    log_history: list[dict]     # the Trainer's logged entries (losses per step, the final evaluation)
    global_step: int
    seconds: dict = field(default_factory=dict)  # wall time of parts of training (never in a tracked output)
    state_dict: dict | None = None  # gathered weights of a sharded (FSDP) model; None: the model holds them


def mean_logged_loss(log_history: list[dict]) -> float | None:
    """Mean of the logged training losses: the same whether or not the run was resumed."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else None


def training_params(params: Params) -> dict:
    """Everything that changes the trained weights (threads and paths do not)."""
    full = params.model_dump(mode="json")
    # the prompt this task reads (the other template cannot change these weights), as before the aspect tasks
    prompt = {"template": params.prompt_template, "chat_template": params.prompt.chat_template}
    task = {} if params.data.task == "sentence" else {"task": params.data.task}
    return {"seed": full["seed"], "model": full["model"], "quantization": full["quantization"], "lora": full["lora"],
            "prompt": prompt, "train": full["train"], "labels": full["data"]["labels"], **task,
            "eval_batch_size": full["eval"]["batch_size"],
            # the CPU kernels round differently: a checkpoint of the other kind would mix two runs
            "cpu": {key: full["runtime"][key] for key in ("cpu_isa", "cpu_matmul")}}


def validation_scorer(model, tokenizer, params: Params):
    """The model being trained as a LabelScorer: evaluate's scoring (no KV cache; the frozen weights back in their
    loaded dtype and evaluate's autocast while it scores, see model/scoring.py), not the float32 of k-bit training."""
    from qlora_sentiment.model.scoring import LabelScorer

    return LabelScorer(model, tokenizer, params.model.head, params.data.labels, params.prompt_template,
                       params.train.max_length, params.prompt.chat_template)


def _label_scores(model, tokenizer, params: Params, rows: list[dict]) -> dict:
    from qlora_sentiment.evaluation.metrics import classification_metrics

    proba = validation_scorer(model, tokenizer, params).score_rows(rows, batch_size=params.eval.batch_size)
    return classification_metrics([r["label"] for r in rows], proba, params.data.labels)


def validation_scores(model, tokenizer, params: Params, val_rows: list[dict]) -> tuple[dict, float]:
    """Label accuracy and macro F1 on the validation split, scored as evaluate scores the test split, and the label
    cross-entropy of the same pass.

    The generative head's validation loss says how well the answer tokens are predicted; these say how well the
    labels are, and are what a hyper-parameter search should pick by (the test split stays unseen until evaluate).
    """
    scores = _label_scores(model, tokenizer, params, val_rows)
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro"]["f1"]}, scores["log_loss"]


# Keys of the validation-curve entries in the Trainer's log history (training/outputs.py draws them).
CURVE_LOSS, CURVE_ACCURACY = "validation_subset_loss", "validation_subset_accuracy"


def curve_steps(points: int, total_steps: int) -> list[int]:
    """`points` evenly spaced optimizer steps in 1..total_steps, the last one at total_steps."""
    if points <= 0 or total_steps <= 0:
        return []
    return sorted({max(1, round(k * total_steps / points)) for k in range(1, points + 1)})


def validation_curve(tokenizer, params: Params, val_rows: list[dict], trainer_model):
    """A TrainerCallback scoring the first train.validation_subset validation reviews (label cross-entropy and
    accuracy, scored as evaluate scores) at train.validation_points evenly spaced steps.

    The entries go into the Trainer's log history, which checkpoints carry: a resumed run replays the points
    before the crash. Every process scores (the same rows), so a sharded model takes part as a whole and no
    process waits for another in a collective; only rank 0's history is written."""
    from transformers import TrainerCallback

    rows = val_rows[:params.train.validation_subset]
    log = logging.getLogger(__name__)

    class ValidationCurve(TrainerCallback):
        def __init__(self):
            self.steps: set[int] = set()
            self.seconds = 0.0  # spent scoring, in this process

        def on_train_begin(self, args, state, control, **kwargs):
            self.steps = set(curve_steps(params.train.validation_points, state.max_steps))

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step not in self.steps or not rows:
                return
            start = time.perf_counter()
            scores = _label_scores(trainer_model(), tokenizer, params, rows)
            self.seconds += time.perf_counter() - start
            state.log_history.append({CURVE_LOSS: scores["log_loss"], CURVE_ACCURACY: scores["accuracy"],
                                      "step": state.global_step})
            log.info("step %d/%d: validation subset (%d reviews) loss %.4f, accuracy %.4f", state.global_step,
                     state.max_steps, len(rows), scores["log_loss"], scores["accuracy"])

    return ValidationCurve()


def device_description() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def train(params: Params, ref: BaseRef, train_rows: list[dict], val_rows: list[dict],
          checkpoint_dir: Path) -> TrainResult:
    """Fit the adapter (resuming from `checkpoint_dir` when the same run was interrupted) and score validation,
    every CPU matrix product in runtime.cpu_matmul's library."""
    with cpu_matmul(params.runtime.cpu_matmul):
        return _train(params, ref, train_rows, val_rows, checkpoint_dir)


def _train(params: Params, ref: BaseRef, train_rows: list[dict], val_rows: list[dict],
           checkpoint_dir: Path) -> TrainResult:
    import torch
    from accelerate import PartialState

    from transformers import AutoConfig

    lora_layers(params.lora, AutoConfig.from_pretrained(ref.path, **ref.kwargs))  # bad rank or depth: before loading
    # The process group and this process's GPU first (accelerate sets cuda:LOCAL_RANK): a model loaded before
    # would be quantized onto cuda:0 in every process, which FSDP then finds on the wrong device.
    state = PartialState(cpu=not torch.cuda.is_available())
    main = state.is_main_process  # with N processes, only rank 0 returns a record
    tokenizer = load_tokenizer(ref)
    sharded = params.runtime.strategy == "fsdp"
    model = load_model(ref, params.model.head, params.data.labels, params.quantization, tokenizer.pad_token_id,
                       sharded=sharded)
    model = add_lora(model, params)
    optimizer = effective_optimizer(params.train.optimizer, torch.cuda.is_available())
    # The Trainer evaluates in file order, padding each batch to its longest row: shortest-first batches pad less.
    eval_rows = sorted(val_rows, key=lambda r: len(r["text"]))
    trainer = build_trainer(model, tokenizer, params, train_rows, eval_rows,
                            trainer_args(params, checkpoint_dir, optimizer))
    keep_trainable_fp32(trainer.model)
    curve = validation_curve(tokenizer, params, val_rows, lambda: trainer.model)
    trainer.add_callback(curve)
    run_id = fingerprint(training_params(params), ref.info, train_rows, val_rows)
    with state.main_process_first():  # rank 0 tidies the checkpoint folder, the others then read the same answer
        start = resume_point(checkpoint_dir, run_id, tidy=main)
    result = trainer.train(resume_from_checkpoint=start)
    # The classifier's loss is the label cross-entropy validation_scores computes anyway: one pass over the
    # validation split instead of two (~30 s of the default's train stage). The generative head's is its answer
    # tokens' loss, which the Trainer computes (every process takes part: it may be sharded; logged in the history).
    classifier = params.model.head == "classifier"
    final_eval = {} if classifier else trainer.evaluate()
    history = list(trainer.state.log_history)
    # A sharded model (FSDP) computes only with every process taking part: all of them score validation and
    # gather the weights (PEFT's FSDP-QLoRA recipe); rank 0 keeps the results. Data-parallel copies need not.
    everyone = trainer.is_fsdp_enabled
    state_dict = full_state_dict(trainer) if everyone else None
    if main or everyone:
        validation, label_loss = validation_scores(trainer.model, tokenizer, params, val_rows)
    if not main:
        return TrainResult(None, trainer.model, tokenizer, history, result.global_step)
    trainable, total = model.get_nb_trainable_parameters()
    record = ModelRecord(
        head=params.model.head, task=params.data.task, labels=list(params.data.labels),
        prompt_template=params.prompt_template,
        chat_template=params.prompt.chat_template,
        max_length=params.train.max_length, quantization=params.quantization, base_model=ref.info,
        optimizer=OptimizerUse(requested=params.train.optimizer, used=optimizer), device=device_description(),
        trainable_parameters=trainable, total_parameters=total, global_step=result.global_step,
        processes=state.num_processes, train_loss=mean_logged_loss(history),
        eval_loss=label_loss if classifier else final_eval.get("eval_loss"), validation=validation,
        clean=params.data.clean.text,  # what prepare did to the texts: every entry point does it too
    )
    return TrainResult(record, trainer.accelerator.unwrap_model(trainer.model), tokenizer, history, result.global_step,
                       {"validation_curve": round(curve.seconds, 1)}, state_dict)


def full_state_dict(trainer) -> dict:
    """The whole state dict of a model FSDP shards across processes (a collective: every process calls it; rank 0
    gets the weights), for save_pretrained to take the adapter's from."""
    trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    return trainer.accelerator.get_state_dict(trainer.model)
