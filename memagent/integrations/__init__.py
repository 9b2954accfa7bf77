"""Adapters to agent frameworks, each behind an optional extra (imported only by its own module)."""
