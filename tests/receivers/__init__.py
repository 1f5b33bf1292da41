"""Local stand-ins for the outside systems Switchboard delivers to, speaking the real wire format."""
