"""The face camera at a door: a camera loop in its own process, supervised by a reader driver that hands the
gateway ordinary credential reads (kind FACE), so face decisions go through the same engine as cards."""
