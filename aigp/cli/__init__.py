"""The aigp command line."""
