"""Development-only tools: the local stack of real services and the agents' desk."""
