"""Conversation text: the injection-safe prompt with its memory block, and exchanges as stored text."""
