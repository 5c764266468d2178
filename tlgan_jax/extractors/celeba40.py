"""The CelebA-40 attribute extractor (TL-GAN's MobileNet v1 net) as an `Extractor`.

  raw_apply(variables, x) = tanh(a), x NCHW [N, 3, 128, 128] in [-1, 1], a = CelebA40Net(x)
      the 40 pre-tanh values; variables = {"params", "batch_stats"} (inference-mode BN);
  preprocess(images)      = NHWC [-1, 1] images, anti-aliased resize to 128×128, -> NCHW
      (TL-GAN fed whole generator images, decimated to 128, to the net: no face crop);
  scores(y)               = arctanh(clip(y, tanh(-3), tanh(3))), TL-GAN's regression target:
      the pre-tanh value a clipped to [-3, 3]; label = score > 0 (binary for all 40).
Weights come from `tlgan_jax.train.celeba40` (trained here from scratch on CelebA).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from tlgan_jax.extractors.core import Extractor, resize_antialiased
from tlgan_jax.extractors.mobilenet import CelebA40Net
from tlgan_jax.weights.pinned import device_arrays, quiet_orbax

# CelebA's 40 attributes, spelled and ordered as tfds `celeb_a` (= list_attr_celeba.txt).
ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
CROP_CENTER_XY = (89, 121)            # TL-GAN's img_crop(cx=89, cy=121, w=128, h=128)
CROP_SIZE = 128
MODEL_CONFIG_FILE = "celeba40_model.json"
CHECKPOINT_SUBDIR = "checkpoints"
NAME = "celeba40"
SCORE_CLIP = 3.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What is needed to rebuild the network from a checkpoint."""
    alpha: float = 1.0
    hidden: int = 256
    image_size: int = 128
    attributes: tuple[str, ...] = ATTRIBUTES

    @property
    def num_attributes(self) -> int:
        return len(self.attributes)

    def describe(self) -> str:
        return (f"alpha={self.alpha}, hidden={self.hidden}, image_size={self.image_size}, "
                f"{self.num_attributes} attributes")

    def module(self) -> CelebA40Net:
        return CelebA40Net(alpha=self.alpha, num_attributes=self.num_attributes,
                           hidden=self.hidden)

    def to_json(self) -> dict:
        return {"format": "tlgan_jax.celeba40/1", "alpha": self.alpha, "hidden": self.hidden,
                "image_size": self.image_size, "attributes": list(self.attributes),
                "input": "RGB NHWC in [-1, 1] = pixels/127.5 - 1",
                "crop": {"center_xy": list(CROP_CENTER_XY), "size": CROP_SIZE},
                "output": "pre-tanh a [N, 40]; prediction tanh(a)"}

    @classmethod
    def from_json(cls, d: dict) -> ModelConfig:
        return cls(alpha=float(d["alpha"]), hidden=int(d["hidden"]),
                   image_size=int(d["image_size"]), attributes=tuple(d["attributes"]))


def init_variables(model_config: ModelConfig, key: jax.Array) -> dict:
    """Random {params, batch_stats}, distributed as Flax's defaults: kernels LeCun normal
    (truncated to ±2σ, σ² = 1/fan_in, fan_in = prod(kernel.shape[:-1])), biases 0, BN scale 1,
    BN mean 0 / var 1. Drawn as one vector, which compiles ~7× faster than `Module.init`."""
    return _init_variables(model_config, key)


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model_config: ModelConfig, key: jax.Array) -> dict:
    abstract = jax.eval_shape(  # parameter shapes do not depend on the spatial size
        lambda: model_config.module().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(
        {"params": abstract["params"], "batch_stats": abstract["batch_stats"]})
    total = sum(leaf.size for path, leaf in leaves if path[-1].key == "kernel")
    # std of N(0, 1) truncated to [-2, 2] is 0.8796...; divide so the kept draws have unit variance
    z = jax.random.truncated_normal(key, -2.0, 2.0, (total,), jnp.float32) / 0.87962566103423978
    out, offset = [], 0
    for path, leaf in leaves:
        name = path[-1].key
        if name == "kernel":
            fan_in = math.prod(leaf.shape[:-1])
            out.append(z[offset:offset + leaf.size].reshape(leaf.shape) * fan_in ** -0.5)
            offset += leaf.size
        elif name in ("scale", "var"):
            out.append(jnp.ones(leaf.shape, jnp.float32))
        else:
            out.append(jnp.zeros(leaf.shape, jnp.float32))
    return jax.tree_util.tree_unflatten(treedef, out)


def checkpoint_directory(path: str) -> str:
    """A working directory or its checkpoints/ folder -> the checkpoints folder."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(os.path.join(path, MODEL_CONFIG_FILE)):
        return path
    sub = os.path.join(path, CHECKPOINT_SUBDIR)
    if os.path.exists(os.path.join(sub, MODEL_CONFIG_FILE)):
        return sub
    raise FileNotFoundError(
        f"no CelebA-40 extractor checkpoint in {path}: expected {MODEL_CONFIG_FILE} there or in "
        f"{CHECKPOINT_SUBDIR}/ (a working directory written by tlgan_jax.train.celeba40)")


def read_model_config(path: str) -> ModelConfig:
    with open(os.path.join(checkpoint_directory(path), MODEL_CONFIG_FILE)) as f:
        return ModelConfig.from_json(json.load(f))


def checkpoint_manager(ckpt_dir: str, keep: int | None = None, read_only: bool = False):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           read_only=read_only)
    return ocp.CheckpointManager(ckpt_dir, options=options)


def restore_variables(path: str, step: int | None = None,
                      model_config: ModelConfig | None = None) -> tuple[dict, int]:
    """{params, batch_stats} of a checkpoint (latest step unless given), and its step."""
    ckpt_dir = checkpoint_directory(path)
    model_config = model_config or read_model_config(ckpt_dir)
    abstract = jax.eval_shape(functools.partial(init_variables, model_config),
                              jax.random.key(0))
    with quiet_orbax(), checkpoint_manager(ckpt_dir, read_only=True) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{ckpt_dir} holds no checkpoint step")
        restored = mngr.restore(step, args=ocp.args.Composite(
            variables=ocp.args.StandardRestore(abstract)))
    return device_arrays(restored["variables"]), int(step)


def _nchw_to_nhwc(x):
    return jnp.transpose(x, (0, 2, 3, 1))


def make_celeba40(variables: dict, model_config: ModelConfig,
                  info: dict | None = None) -> Extractor:
    """Wrap trained (or random) variables {params, batch_stats} as an Extractor."""
    module = model_config.module()
    size = model_config.image_size
    lo, hi = float(np.tanh(-SCORE_CLIP)), float(np.tanh(SCORE_CLIP))

    def raw_apply(variables, x):
        return jnp.tanh(module.apply(variables, _nchw_to_nhwc(x), train=False))

    def preprocess(images):
        return jnp.transpose(resize_antialiased(images, size), (0, 3, 1, 2))

    def scores(y):
        return jnp.arctanh(jnp.clip(y, lo, hi))

    k = model_config.num_attributes
    return Extractor(
        name=NAME, attributes=tuple(model_config.attributes), input_shape=(3, size, size),
        params=variables, raw_apply=raw_apply, preprocess=preprocess, scores=scores,
        binary=(True,) * k, info=dict(model_config.to_json(), **(info or {})))


def load_celeba40(checkpoint_dir: str, step: int | None = None) -> Extractor:
    """A working directory of `train_extractor` (or its checkpoints/ folder) -> Extractor,
    with the latest checkpoint unless `step` is given."""
    ckpt_dir = checkpoint_directory(checkpoint_dir)
    model_config = read_model_config(ckpt_dir)
    variables, step = restore_variables(ckpt_dir, step, model_config)
    return make_celeba40(variables, model_config,
                         info={"checkpoint": ckpt_dir, "step": step})


def random_celeba40(key: jax.Array, alpha: float = 1.0) -> Extractor:
    """Random (untrained) weights, for benchmarks and shape tests."""
    model_config = ModelConfig(alpha=alpha)
    return make_celeba40(init_variables(model_config, key), model_config,
                         info={"checkpoint": None})
