"""The command line: thin adapters from argv to the library and back to output."""
