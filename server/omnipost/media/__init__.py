"""Media handling: facts sniffed from bytes."""
