"""The brain: thread, enrich, classify, route, start the SLA clock and acknowledge."""
