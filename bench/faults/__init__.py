"""The fault suite (issue #10): real processes under load, faults injected, what people saw counted."""

__all__: list[str] = []
