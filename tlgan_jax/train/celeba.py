"""CelebA for the attribute extractor: tfds `celeb_a`, TL-GAN's face crop, ±1 labels.

Images: the aligned 178×218 CelebA images, cropped as TL-GAN does to the 128×128 window
centred on (x, y) = (89, 121): rows 121-64 : 121+64, columns 89-64 : 89+64.
Labels: CelebA's 40 binary attributes (tfds order) as float32 in {-1, +1}.

Reading goes through `tfds.data_source("celeb_a", ...)` (random access to array_record
files: no TensorFlow at run time). Preparing those files once does need TensorFlow: see
`missing_data_message`. The chosen images are decoded once into memory (uint8, 48 KiB
each: 3.2 GB for TL-GAN's 2^16) and served by `batch_iterator`, whose order and flips
depend only on (seed, epoch), so a resumed run sees the same batches.
"""
from __future__ import annotations

import concurrent.futures
import os
import time
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from tlgan_jax.extractors.celeba40 import ATTRIBUTES, CROP_CENTER_XY, CROP_SIZE

IMAGE_SHAPE = (218, 178, 3)           # aligned CelebA image, HWC
TFDS_NAME = "celeb_a"
MANUAL_FILES = ("img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt",
                "list_landmarks_align_celeba.txt", "identity_CelebA.txt")


class CelebANotFoundError(FileNotFoundError):
    """tfds `celeb_a` is not prepared (as array_record) in the data directory."""


class CelebAArrays(NamedTuple):
    images: np.ndarray      # uint8 [N, 128, 128, 3], cropped faces
    labels: np.ndarray      # float32 [N, 40] in {-1, +1}


def crop_face(images: np.ndarray) -> np.ndarray:
    """[..., 218, 178, C] aligned CelebA -> [..., 128, 128, C], TL-GAN's crop."""
    if images.shape[-3:-1] != IMAGE_SHAPE[:2]:
        raise ValueError(f"crop_face: expected aligned CelebA images [..., 218, 178, C], "
                         f"got shape {images.shape}")
    cx, cy = CROP_CENTER_XY
    h = CROP_SIZE // 2
    return images[..., cy - h:cy + h, cx - h:cx + h, :]


def labels_from_attributes(attributes: dict) -> np.ndarray:
    """tfds example['attributes'] ({name: bool}) -> float32 [40] in {-1, +1}, tfds order."""
    return np.asarray([1.0 if attributes[a] else -1.0 for a in ATTRIBUTES], np.float32)


def default_data_dir() -> str:
    """tfds' default: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                        "tensorflow_datasets"))


def missing_data_message(data_dir: str | None) -> str:
    root = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    manual = os.path.join(root, "downloads", "manual")
    files = "\n".join(f"      {f}" for f in MANUAL_FILES)
    return f"""CelebA (tfds '{TFDS_NAME}', array_record format) is not prepared under {root}.
tlgan_jax reads it with tfds.data_source (no TensorFlow needed), but tfds' celeb_a builder
needs TensorFlow to prepare it once, and the files must be written as array_record.
  1. Download from the CelebA site (mmlab.ie.cuhk.edu.hk/projects/CelebA.html; Google Drive
     folders 'Img', 'Anno' and 'Eval') these 5 files and put them, named exactly so, in one
     folder MANUAL (tfds looks in {manual} by default):
{files}
     tfds checks each file's size and sha256 against its registered checksums.
  2. In a Python environment with TensorFlow
     (pip install tensorflow-cpu tensorflow-datasets importlib_resources), run
       import tensorflow_datasets as tfds
       tfds.builder("{TFDS_NAME}", data_dir="{root}", file_format="array_record") \\
           .download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="MANUAL"))
     or the CLI (it also needs `pip install apache-beam` to start):
       tfds build {TFDS_NAME} --data_dir {root} --manual_dir MANUAL --file_format array_record
  3. Pass --data_dir {root} (or data_dir=...) here; reading needs no TensorFlow."""


def open_split(split: str, data_dir: str | None = None) -> Sequence[dict]:
    """Random-access tfds source of one split (e.g. "train", "validation[:1000]")."""
    try:
        import tensorflow_datasets as tfds  # lazy: importing tfds takes ~1 s; an extra
    except ImportError as e:
        raise ModuleNotFoundError(f"reading CelebA needs tensorflow-datasets, the 'celeba' "
                                  f"extra: pip install -e '.[celeba]' ({e})",
                                  name="tensorflow_datasets") from e
    try:
        return tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir, download=False,
                                builder_kwargs={"file_format": "array_record"})
    except (KeyError, NotImplementedError, FileNotFoundError, AssertionError) as e:
        raise CelebANotFoundError(f"{missing_data_message(data_dir)}\n(tfds said: {e})") from e


def decode_example(example: dict) -> tuple[np.ndarray, np.ndarray]:
    """tfds celeb_a example -> (uint8 [128, 128, 3] crop, float32 [40] ±1 labels)."""
    return crop_face(np.asarray(example["image"], np.uint8)), \
        labels_from_attributes(example["attributes"])


def load_arrays(source: Sequence[dict], indices: Sequence[int], *, num_threads: int = 8,
                log: Callable[[str], None] | None = None,
                what: str = "images") -> CelebAArrays:
    """Decode and crop source[i] for i in indices into memory, with a thread pool."""
    indices = [int(i) for i in indices]
    n = len(indices)
    images = np.empty((n, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    labels = np.empty((n, len(ATTRIBUTES)), np.float32)

    def load_one(k):
        images[k], labels[k] = decode_example(source[indices[k]])

    t0 = time.perf_counter()
    report_every = max(n // 10, 1)
    with concurrent.futures.ThreadPoolExecutor(max(num_threads, 1)) as pool:
        for done, _ in enumerate(pool.map(load_one, range(n)), start=1):
            if log and (done % report_every == 0 or done == n):
                dt = time.perf_counter() - t0
                log(f"loaded {done}/{n} {what} ({done / max(dt, 1e-9):.0f} images/s)")
    return CelebAArrays(images, labels)


def choose_indices(total: int, num: int | None, seed: int) -> np.ndarray:
    """`num` distinct indices of range(total) drawn with an explicit seed (all if None), sorted."""
    if num is None or num >= total:
        return np.arange(total)
    if num <= 0:
        raise ValueError(f"number of images must be positive, got {num}")
    return np.sort(np.random.default_rng(seed).choice(total, size=num, replace=False))


def load_split(split: str, data_dir: str | None = None, *, num: int | None = None,
               seed: int = 0, num_threads: int = 8,
               log: Callable[[str], None] | None = None) -> CelebAArrays:
    """`num` random images (all if None) of a tfds celeb_a split, cropped, in memory."""
    source = open_split(split, data_dir)
    indices = choose_indices(len(source), num, seed)
    return load_arrays(source, indices, num_threads=num_threads, log=log, what=f"{split} images")


def num_batches(num_examples: int, batch_size: int, drop_remainder: bool = True) -> int:
    return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)


def batch_iterator(data: CelebAArrays, batch_size: int, *, seed: int = 0, epoch: int = 0,
                   shuffle: bool = True, flip: bool = False, drop_remainder: bool = True,
                   start_batch: int = 0) -> Iterator[CelebAArrays]:
    """Batches of one epoch. Order and horizontal flips depend only on (seed, epoch);
    `start_batch` skips the first batches of that epoch (to resume mid-epoch)."""
    n = len(data.labels)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if drop_remainder and n < batch_size:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} examples available")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    for b in range(start_batch, num_batches(n, batch_size, drop_remainder)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        images = data.images[idx]
        f = flips[idx]
        if f.any():
            images[f] = images[f, :, ::-1]
        yield CelebAArrays(images, data.labels[idx])


class SyntheticCelebA(Sequence):
    """A stand-in for the tfds source with celeb_a's example format, for tests and benchmarks.

    Example i (deterministic in (seed, i)) has 4 hidden bits b; its image is dim noise, and on
    the face crop b[0..2] each brighten one colour channel and b[3] adds a 2-pixel
    checkerboard. Attribute j is b[j % 4] XOR (j // 4 odd). The cues are position- and
    flip-invariant, so a convnet with global pooling learns them quickly.
    """

    NUM_BITS = 4

    def __init__(self, num_examples: int, seed: int = 0):
        self.num_examples = int(num_examples)
        self.seed = int(seed)

    def __len__(self):
        return self.num_examples

    def __getitem__(self, i):
        if not 0 <= i < self.num_examples:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, int(i)])
        bits = rng.random(self.NUM_BITS) < 0.5
        image = rng.integers(0, 60, IMAGE_SHAPE, dtype=np.uint8)
        cx, cy = CROP_CENTER_XY
        h = CROP_SIZE // 2
        face = image[cy - h:cy + h, cx - h:cx + h]          # a view
        for k in range(3):
            if bits[k]:
                face[..., k] += 120
        if bits[3]:
            r, c = np.indices(face.shape[:2])
            face += (((r // 2 + c // 2) % 2) * 70).astype(np.uint8)[..., None]
        attributes = {a: np.bool_(bits[j % self.NUM_BITS] ^ bool((j // self.NUM_BITS) % 2))
                      for j, a in enumerate(ATTRIBUTES)}
        return {"image": image, "attributes": attributes,
                "landmarks": {}, "identity": {"Identity_No": np.int64(i)}}
