"""Intake: decode, dedupe and identify each inbound message; bounces and team-mailbox answers."""
