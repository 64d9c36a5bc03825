"""CSConv tasks for lm-evaluation-harness (installed as ``csc_harness.tasks``)."""
