"""Dispatch: routed conversations, receipts and notices delivered to the agents' tools."""
