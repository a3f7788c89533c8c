"""The book's own helpers, beside the notebooks that use them: run context and provenance (``context``),
sentences and tables made from results (``results``) and figures (``plots``).

Installed with ``plinknet`` (see ``pyproject.toml``), but not part of it: the package ``plinknet`` never
imports this one (``lint-imports`` checks that).
"""
