"""Durable state: SQLite by default (WAL, foreign keys), schema versioned by migrations.py."""
