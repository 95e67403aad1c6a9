"""Task families; every public module here registers one or more tasks."""
