"""Pure data records shared by every stage; no I/O here."""
