"""Use cases, each call one unit of work: remember, recall, backfill, transfer, reembed, maintenance."""
