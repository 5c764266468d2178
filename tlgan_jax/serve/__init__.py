"""The interactive editor: `python -m tlgan_jax.serve [--axes WORKDIR/axes.npz]`, then open
http://127.0.0.1:8000. Needs the `ui` extra (fastapi, uvicorn, python-multipart).

    from tlgan_jax.serve import Editor, create_app
    editor = Editor(gen, extractors, axes); editor.warmup()
    app = create_app(editor)            # a FastAPI app; run it with uvicorn

Names are imported on first use, so importing this package does not import FastAPI.
"""
from tlgan_jax.lazy import lazy_getattr

_EXPORTS = {"Editor": "editor", "EditorError": "editor", "Limits": "editor",
            "default_axes": "editor", "create_app": "app", "build_editor": "launch",
            "benchmark": "launch", "main": "launch"}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)
