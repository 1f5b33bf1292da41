"""Send: every reply to a customer guarded, rate-limited and sent at most once."""
