"""memagent inside agent frameworks, each behind its own optional extra (imported only when asked for)."""
