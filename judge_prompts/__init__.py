"""Judge prompt folders, shipped as package data (``csc_harness.judge_prompts``).

Nothing here is Python: each sub-folder holds a ``rubric.yaml`` and Jinja2 templates.
See README.md for the format.
"""
