"""The payment switch. Importing this package does nothing; see docs/architecture.md for the map."""
