"""The chat agent: one turn (recall, prompt, reply, store) and the injection-safe prompt."""
