"""Verification: filter generated labels, promote them for approval, undo, and approve (terminal, atomic)."""
