"""The interactive editor: `python -m tlgan_jax.serve [--axes WORKDIR/axes.npz]`, then open
http://127.0.0.1:8000. Needs the `ui` extra (fastapi, uvicorn, python-multipart).

    from tlgan_jax.serve import Editor, create_app
    editor = Editor(gen, extractors, axes); editor.warmup()
    app = create_app(editor)            # a FastAPI app; run it with uvicorn

Names are imported on first use, so importing this package does not import FastAPI.
"""
import importlib

_EXPORTS = {"Editor": "editor", "EditorError": "editor", "Limits": "editor",
            "default_axes": "editor", "create_app": "app", "build_editor": "launch",
            "benchmark": "launch", "main": "launch"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"tlgan_jax.serve.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tlgan_jax.serve' has no attribute {name!r}")
