"""The policy: one YAML file loaded, validated and turned into immutable values."""
