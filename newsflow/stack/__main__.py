"""``python -m newsflow.stack up|down|status|install`` (same as ``newsflow stack ...``)."""

from newsflow.stack.cli import stack_app

stack_app(prog_name="newsflow stack")
