"""Models: the interface, the catalogue, class mapping, and the adapters (heavy imports stay inside them)."""
