"""Golden vectors for the DigiFace DCGAN generator (reference runtime: PyTorch).

Run once with the reference venv:
    /opt/refvenv/bin/python scripts/make_golden_dcgan.py [GAN_FACE_GENERATE_DIR]
(default dir /tmp/wx/gan_face_generate: the extracted `gan-face-generate` wheel, which holds
models.py and weights.tar). Writes tests/golden/dcgan.npz with
    z       [8, 100] float32  RandomState(0).randn(8, 100); row 7 scaled by 4 (large norm)
    images  [8, 64, 64, 3] float32  Generator(ngpu=0, nc=3, nz=100, ngf=64) in eval mode,
            output NCHW [8, 3, 64, 64] transposed to NHWC (the layout of tlgan_jax.generators.dcgan)
"""
import pathlib
import sys

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/wx/gan_face_generate")
    sys.path.insert(0, str(src.parent))
    from gan_face_generate.models import Generator

    net = Generator(ngpu=0, nc=3, nz=100, ngf=64)
    state = torch.load(src / "weights.tar", map_location="cpu", weights_only=True)
    net.load_state_dict(state["netG_state_dict"])
    net.eval()

    z = np.random.RandomState(0).randn(8, 100).astype(np.float32)
    z[7] *= 4.0
    with torch.no_grad():
        images = net(torch.from_numpy(z)[:, :, None, None]).numpy()
    images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    out = ROOT / "tests" / "golden" / "dcgan.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, z=z, images=images)
    print(f"wrote {out}: z {z.shape}, images NHWC {images.shape}, "
          f"range [{images.min():.3f}, {images.max():.3f}], torch {torch.__version__}")


if __name__ == "__main__":
    main()
