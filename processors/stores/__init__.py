"""Every Redis store the stages use; the table of key families is in the README."""
