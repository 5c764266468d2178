"""The interactive editor: `python -m tlgan_jax.serve [--axes WORKDIR/axes.npz]`, then open
http://127.0.0.1:8000. Needs the `ui` extra (fastapi, uvicorn, python-multipart).

    from tlgan_jax.serve import Editor, create_app
    editor = Editor(gen, extractors, axes); editor.warmup()
    app = create_app(editor)            # a FastAPI app; run it with uvicorn
"""
from tlgan_jax.discover import default_axes
from tlgan_jax.serve.app import create_app
from tlgan_jax.serve.editor import Editor, EditorError, Limits
from tlgan_jax.serve.launch import benchmark, build_editor, main

__all__ = ["Editor", "EditorError", "Limits", "benchmark", "build_editor", "create_app",
           "default_axes", "main"]
