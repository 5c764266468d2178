"""Training the CelebA-40 attribute extractor (TL-GAN's design), with checkpoints and metrics.

Model: `CelebA40Net` (MobileNet v1 + GAP + Dense(256, relu) + Dense(40)), output y = tanh(a).
Loss:  MSE(y, labels), labels in {-1, +1}, mean over batch and the 40 attributes.
Input: uint8 crops -> x = pixels/127.5 - 1.  Optimiser: Adam (AdamW if weight_decay > 0),
learning rate constant (TL-GAN) or cosine-decayed to 0, optional linear warm-up.
TL-GAN froze an ImageNet-initialised MobileNet; ImageNet weights are not available offline,
so here the whole network is trained from scratch (or from `init_checkpoint`).

Validation, per attribute j (label +1 = positive):
  accuracy_j = mean(sign(a_j) == label_j);  AUC_j = P(a_j(pos) > a_j(neg)) + ½ P(tie)
  (Mann-Whitney, ties averaged);  mse_j = mean((tanh a_j - label_j)²).

Working directory layout:
  config.json                 the TrainConfig of the run
  checkpoints/<step>/         orbax: items variables ({params, batch_stats}), opt_state, progress
  checkpoints/celeba40_model.json   ModelConfig, so `celeba40.load_celeba40` needs only the dir
  metrics.csv, metrics.md     per-attribute validation table of the latest evaluation
  eval_history.csv            one line per evaluation
A run in a working directory that holds checkpoints resumes from the latest one; the data
order depends only on (seed, epoch), so the resumed run sees the batches it would have seen.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from tlgan_jax import metrics
from tlgan_jax.extractors.celeba40 import (
    ATTRIBUTES,
    CHECKPOINT_SUBDIR,
    MODEL_CONFIG_FILE,
    ModelConfig,
    checkpoint_manager,
    init_variables,
    read_model_config,
    restore_variables,
)
from tlgan_jax.files import atomic_open, write_json
from tlgan_jax.train import celeba
from tlgan_jax.weights.pinned import device_arrays


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    alpha: float = 1.0               # MobileNet width multiplier
    batch_size: int = 128            # TL-GAN: 128
    epochs: int = 50                 # TL-GAN: 50
    learning_rate: float = 1e-3      # Adam, TL-GAN: Keras default 1e-3
    lr_schedule: str = "cosine"      # "constant" (TL-GAN) or "cosine" (decay to 0)
    warmup_steps: int = 0
    weight_decay: float = 0.0        # > 0: AdamW
    flip: bool = True                # random horizontal flips of training images
    num_train: int | None = 2 ** 16   # TL-GAN: 2^16 random images (None: whole split)
    num_val: int | None = 8192        # from CelebA's validation split (None: all 19,867)
    seed: int = 0
    eval_batch_size: int = 256
    log_every: int = 100             # steps between progress lines
    checkpoint_every: int = 0        # steps between checkpoints; 0: at the end of each epoch
    keep_checkpoints: int = 3
    num_threads: int = 8             # JPEG decoding threads

    def model_config(self) -> ModelConfig:
        return ModelConfig(alpha=self.alpha)

    def validate(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got "
                             f"{self.lr_schedule!r}")
        for name in ("batch_size", "epochs", "eval_batch_size", "log_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """Hashable description of the optimiser (a static argument of the jitted step)."""
    learning_rate: float
    lr_schedule: str
    warmup_steps: int
    total_steps: int
    weight_decay: float

    def build(self) -> optax.GradientTransformation:
        lr: Any = self.learning_rate
        if self.lr_schedule == "cosine":
            lr = optax.warmup_cosine_decay_schedule(
                0.0, self.learning_rate, self.warmup_steps,
                max(self.total_steps, self.warmup_steps + 1), end_value=0.0)
        elif self.warmup_steps > 0:
            lr = optax.join_schedules(
                [optax.linear_schedule(0.0, self.learning_rate, self.warmup_steps),
                 optax.constant_schedule(self.learning_rate)], [self.warmup_steps])
        if self.weight_decay > 0:
            return optax.adamw(lr, weight_decay=self.weight_decay)
        return optax.adam(lr)


@dataclasses.dataclass
class TrainResult:
    variables: dict                  # {"params", "batch_stats"} of the final step
    step: int
    losses: np.ndarray               # training loss of every step run by this call
    metrics: dict | None          # latest validation metrics (see attribute_metrics)
    workdir: str
    resumed_from: int | None


# ----------------------------------------------------------------------------- model state

def to_model_input(images_u8: jax.Array) -> jax.Array:
    return images_u8.astype(jnp.float32) / 127.5 - 1.0


def create_state(model_config: ModelConfig, optim: OptimizerSpec, key: jax.Array,
                 variables: dict | None = None) -> dict:
    """{"step", "params", "batch_stats", "opt_state"} (a plain pytree)."""
    if variables is None:
        variables = init_variables(model_config, key)
    return _state_from_variables(variables, optim)


@functools.partial(jax.jit, static_argnums=1)
def _state_from_variables(variables: dict, optim: OptimizerSpec) -> dict:
    return {"step": jnp.zeros((), jnp.int32), "params": variables["params"],
            "batch_stats": variables["batch_stats"],
            "opt_state": optim.build().init(variables["params"])}


@functools.partial(jax.jit, static_argnames=("model_config", "optim"))
def train_step(state: dict, images_u8: jax.Array, labels: jax.Array, *,
               model_config: ModelConfig, optim: OptimizerSpec) -> tuple[dict, jax.Array]:
    model = model_config.module()
    x = to_model_input(images_u8)

    def loss_fn(params):
        a, updates = model.apply({"params": params, "batch_stats": state["batch_stats"]}, x,
                                 train=True, mutable=["batch_stats"])
        return jnp.mean((jnp.tanh(a) - labels) ** 2), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = optim.build().update(grads, state["opt_state"], state["params"])
    return {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
            "batch_stats": batch_stats, "opt_state": opt_state}, loss


@functools.partial(jax.jit, static_argnames=("model_config",))
def predict_pre_tanh(variables: dict, images_u8: jax.Array, *,
                     model_config: ModelConfig) -> jax.Array:
    """uint8 NHWC crops -> [N, 40] pre-tanh values a, inference mode (running BN stats)."""
    return model_config.module().apply(variables, to_model_input(images_u8), train=False)


def predict_dataset(variables: dict, images_u8: np.ndarray, model_config: ModelConfig,
                    batch_size: int = 256) -> np.ndarray:
    """All images in fixed-size batches (the last one padded), -> float32 [N, 40]."""
    n = len(images_u8)
    out = []
    for start in range(0, n, batch_size):
        chunk = images_u8[start:start + batch_size]
        m = len(chunk)
        if m < batch_size and n > batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - m,) + chunk.shape[1:],
                                                    chunk.dtype)])
        out.append(np.asarray(predict_pre_tanh(variables, chunk, model_config=model_config))[:m])
    return np.concatenate(out) if out else np.zeros((0, model_config.num_attributes), np.float32)


# ----------------------------------------------------------------------------- metrics

def attribute_metrics(pre_tanh: np.ndarray, labels: np.ndarray,
                      attributes: tuple[str, ...] = ATTRIBUTES) -> dict:
    """Per-attribute validation metrics: arrays of length k, plus the mean MSE loss."""
    pre_tanh = np.asarray(pre_tanh, np.float64)
    labels = np.asarray(labels, np.float64)
    positive = labels > 0
    return {
        "attributes": tuple(attributes),
        "accuracy": np.mean((pre_tanh > 0) == positive, axis=0),
        "auc": metrics.roc_auc_columns(pre_tanh, positive),
        "mse": np.mean((np.tanh(pre_tanh) - labels) ** 2, axis=0),
        "positive_fraction": np.mean(positive, axis=0),
        "num_examples": int(labels.shape[0]),
        "loss": float(np.mean((np.tanh(pre_tanh) - labels) ** 2)),
    }


def write_metrics_tables(metrics: dict, directory: str, stem: str = "metrics",
                         title: str = "") -> tuple[str, str]:
    """metrics -> <directory>/<stem>.csv and .md (one row per attribute, then the mean)."""
    os.makedirs(directory, exist_ok=True)
    cols = ("accuracy", "auc", "mse", "positive_fraction")
    rows = [(a, *(float(metrics[c][j]) for c in cols))
            for j, a in enumerate(metrics["attributes"])]
    rows.append(("(mean)", *(float(np.nanmean(metrics[c])) for c in cols)))
    csv_path = os.path.join(directory, stem + ".csv")
    with atomic_open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("attribute",) + cols)
        for r in rows:
            w.writerow((r[0],) + tuple(f"{v:.6f}" for v in r[1:]))
    md_path = os.path.join(directory, stem + ".md")
    with atomic_open(md_path, "w") as f:
        if title:
            f.write(f"{title}\n\n")
        f.write(f"Validation on {metrics['num_examples']} images; MSE loss "
                f"{metrics['loss']:.4f}.\n\n")
        f.write("| attribute | accuracy | AUC | MSE | positive fraction |\n")
        f.write("|---|---:|---:|---:|---:|\n")
        for r in rows:
            name = f"**{r[0]}**" if r[0] == "(mean)" else r[0]
            f.write(f"| {name} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.3f} |\n")
    return csv_path, md_path


# ----------------------------------------------------------------------------- checkpoints

def _save(mngr, state: dict, progress: dict):
    mngr.save(int(state["step"]), args=ocp.args.Composite(
        variables=ocp.args.StandardSave({"params": state["params"],
                                         "batch_stats": state["batch_stats"]}),
        opt_state=ocp.args.StandardSave(state["opt_state"]),
        progress=ocp.args.JsonSave(progress)))


def _restore_state(mngr, step: int, abstract_state: dict) -> dict:
    r = mngr.restore(step, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore({"params": abstract_state["params"],
                                            "batch_stats": abstract_state["batch_stats"]}),
        opt_state=ocp.args.StandardRestore(abstract_state["opt_state"]),
        progress=ocp.args.JsonRestore()))
    return device_arrays({"step": np.asarray(r["progress"]["step"], np.int32),
                         "params": r["variables"]["params"],
                         "batch_stats": r["variables"]["batch_stats"],
                         "opt_state": r["opt_state"]})


# ----------------------------------------------------------------------------- training

def train(config: TrainConfig, data_dir: str | None, workdir: str, *,
          init_checkpoint: str | None = None, max_steps: int | None = None,
          log: Callable[[str], None] = logging.info) -> TrainResult:
    """Load tfds celeb_a (num_train random train images, num_val validation images, chosen with
    the seed), then `train_on_arrays`. Raises celeba.CelebANotFoundError if it is not prepared."""
    config.validate()
    train_data = celeba.load_split("train", data_dir, num=config.num_train, seed=config.seed,
                                   num_threads=config.num_threads, log=log)
    val_data = celeba.load_split("validation", data_dir, num=config.num_val,
                                 seed=config.seed + 1, num_threads=config.num_threads, log=log)
    return train_on_arrays(config, train_data, val_data, workdir,
                           init_checkpoint=init_checkpoint, max_steps=max_steps, log=log)


def train_on_arrays(config: TrainConfig, train_data: celeba.CelebAArrays,
                    val_data: celeba.CelebAArrays | None, workdir: str, *,
                    init_checkpoint: str | None = None, max_steps: int | None = None,
                    log: Callable[[str], None] = logging.info) -> TrainResult:
    """Train (or resume) in `workdir` until `epochs` are done or the step count reaches
    `max_steps`; evaluate on val_data at each epoch end and at the stop."""
    config.validate()
    model_config = config.model_config()
    workdir = os.path.abspath(os.path.expanduser(workdir))
    ckpt_dir = os.path.join(workdir, CHECKPOINT_SUBDIR)
    os.makedirs(ckpt_dir, exist_ok=True)

    model_json = model_config.to_json()
    model_json_path = os.path.join(ckpt_dir, MODEL_CONFIG_FILE)
    if os.path.exists(model_json_path):
        existing = read_model_config(ckpt_dir)
        if existing != model_config:
            raise ValueError(f"{workdir} holds a model with {existing.describe()}, but this run "
                             f"asks for {model_config.describe()}: use another workdir")
    else:
        write_json(model_json_path, model_json, indent=2)
    write_json(os.path.join(workdir, "config.json"), dataclasses.asdict(config), indent=2)

    n_train = len(train_data.labels)
    steps_per_epoch = celeba.num_batches(n_train, config.batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {n_train} training images")
    total_steps = config.epochs * steps_per_epoch
    stop_step = total_steps if max_steps is None else min(max_steps, total_steps)
    optim = OptimizerSpec(config.learning_rate, config.lr_schedule, config.warmup_steps,
                          # a constant schedule does not depend on the length of the run
                          total_steps if config.lr_schedule == "cosine" else 0,
                          config.weight_decay)

    key = jax.random.key(config.seed)
    resumed_from = None
    metrics = None
    with checkpoint_manager(ckpt_dir, keep=config.keep_checkpoints) as mngr:
        latest = mngr.latest_step()
        if latest is not None:
            abstract_state = jax.eval_shape(
                functools.partial(create_state, model_config, optim), key)
            state = _restore_state(mngr, latest, abstract_state)
            resumed_from = latest
            log(f"resumed from {ckpt_dir} at step {latest}"
                + (" (init_checkpoint ignored)" if init_checkpoint else ""))
        else:
            variables = None
            if init_checkpoint:
                init_config = read_model_config(init_checkpoint)
                if init_config != model_config:
                    raise ValueError(
                        f"init_checkpoint {init_checkpoint} holds a model with "
                        f"{init_config.describe()}, which does not match this run's "
                        f"{model_config.describe()}")
                variables, init_step = restore_variables(init_checkpoint,
                                                         model_config=model_config)
                log(f"initialised from {init_checkpoint} (its step {init_step})")
            else:
                log("initialised at random (from scratch: no ImageNet weights offline)")
            state = create_state(model_config, optim, key, variables)

        step = int(state["step"])
        log(f"{n_train} training images, {steps_per_epoch} steps/epoch, {total_steps} steps in "
            f"{config.epochs} epochs; starting at step {step}, stopping at {stop_step}")
        losses: list = []
        last_eval_step = None

        def evaluate_and_record(epoch_done: float):
            nonlocal metrics, last_eval_step
            if val_data is None or len(val_data.labels) == 0:
                return
            variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
            pre = predict_dataset(variables, val_data.images, model_config,
                                  config.eval_batch_size)
            metrics = attribute_metrics(pre, val_data.labels, model_config.attributes)
            write_metrics_tables(metrics, workdir, title=(
                f"CelebA-40 extractor (alpha {config.alpha}), step {step}, "
                f"epoch {epoch_done:.2f}"))
            hist = os.path.join(workdir, "eval_history.csv")
            new = not os.path.exists(hist)
            with open(hist, "a") as f:
                if new:
                    f.write("step,epoch,val_loss,mean_accuracy,mean_auc\n")
                f.write(f"{step},{epoch_done:.4f},{metrics['loss']:.6f},"
                        f"{np.mean(metrics['accuracy']):.6f},{np.nanmean(metrics['auc']):.6f}\n")
            last_eval_step = step
            log(f"step {step} (epoch {epoch_done:.2f}): val loss {metrics['loss']:.4f}, "
                f"mean accuracy {np.mean(metrics['accuracy']):.4f}, "
                f"mean AUC {np.nanmean(metrics['auc']):.4f}")

        def progress(epoch_done: float) -> dict:
            return {"step": step, "epoch": epoch_done, "steps_per_epoch": steps_per_epoch,
                    "total_steps": total_steps}

        t_log, n_log, since_log = time.perf_counter(), 0, []
        first_interval = True             # its time includes compiling the step
        while step < stop_step:
            epoch, start_batch = divmod(step, steps_per_epoch)
            for images, labels in celeba.batch_iterator(
                    train_data, config.batch_size, seed=config.seed, epoch=epoch, shuffle=True,
                    flip=config.flip, start_batch=start_batch):
                state, loss = train_step(state, images, labels, model_config=model_config,
                                         optim=optim)
                step += 1
                losses.append(loss)
                since_log.append(loss)
                n_log += len(labels)
                at_epoch_end = step % steps_per_epoch == 0
                if step % config.log_every == 0 or step == stop_step:
                    mean_loss = float(np.mean(jax.device_get(since_log)))
                    dt = time.perf_counter() - t_log
                    log(f"step {step}/{total_steps} epoch {step / steps_per_epoch:.2f}: "
                        f"loss {mean_loss:.4f}, {n_log / max(dt, 1e-9):.1f} samples/s"
                        + (" (incl. compilation)" if first_interval else ""))
                    t_log, n_log, since_log = time.perf_counter(), 0, []
                    first_interval = False
                if at_epoch_end or step == stop_step:
                    evaluate_and_record(step / steps_per_epoch)
                if at_epoch_end or step == stop_step or (
                        config.checkpoint_every and step % config.checkpoint_every == 0):
                    _save(mngr, state, progress(step / steps_per_epoch))
                if step == stop_step or at_epoch_end:
                    break
        if last_eval_step != step and val_data is not None:
            evaluate_and_record(step / steps_per_epoch)
        if mngr.latest_step() != step:
            _save(mngr, state, progress(step / steps_per_epoch))
        mngr.wait_until_finished()

    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    return TrainResult(variables=variables, step=step,
                       losses=np.asarray(jax.device_get(losses), np.float32).reshape(-1),
                       metrics=metrics, workdir=workdir, resumed_from=resumed_from)


def tiny_checkpoint(workdir: str, *, alpha: float = 0.25, num_train: int = 64,
                    num_val: int = 32, batch_size: int = 16, epochs: int = 2, seed: int = 0,
                    log: Callable[[str], None] = lambda s: None) -> TrainResult:
    """A small trained extractor in `workdir` from `celeba.SyntheticCelebA` (no CelebA needed),
    for tests that need a real checkpoint: `celeba40.load_celeba40(workdir)` loads it.
    About 15 s on 2 CPU cores, most of it compiling the training step."""
    config = TrainConfig(alpha=alpha, batch_size=batch_size, epochs=epochs,
                         learning_rate=3e-3, lr_schedule="constant", num_train=num_train,
                         num_val=num_val, seed=seed, eval_batch_size=batch_size,
                         log_every=10 ** 9, num_threads=2)
    source = celeba.SyntheticCelebA(num_train + num_val, seed=seed)
    train_data = celeba.load_arrays(source, range(num_train), num_threads=2)
    val_data = celeba.load_arrays(source, range(num_train, num_train + num_val), num_threads=2)
    return train_on_arrays(config, train_data, val_data, workdir, log=log)
