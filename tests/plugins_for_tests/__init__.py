"""Plugins used by the campaign / executor / store tests (loaded with ``--plugin`` or
``load_host(extra_modules=[...])``; ``tests/`` is on ``sys.path`` via ``conftest.py``)."""
