"""The editor (python -m tlgan_jax.serve, tlgan-editor): its config lives in the package
(`tlgan_jax.serve.launch.EditorConfig`) so the installed command works without this folder;
`--config=configs/serve.py` (or a copy of this file with other defaults) chooses it."""
import dataclasses

from tlgan_jax.serve.launch import EditorConfig


def get_config() -> EditorConfig:
    return dataclasses.replace(EditorConfig())
