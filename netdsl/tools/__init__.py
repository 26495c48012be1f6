"""Tools built on the pipeline: hyperparameter sweeps (``sweep``), the editor
index of a spec (``ide``) and the language server around it (``lsp``).
"""
