"""Renderers: one record type in, table/json/yaml out (stdout); progress goes to stderr."""
