"""Oracles that judge a recovered crash image: one module per oracle, behind one protocol."""

__all__: list[str] = []
