"""Watches on the leader: SLA clocks and the lifecycle's follow-ups and closes, fired when due."""
