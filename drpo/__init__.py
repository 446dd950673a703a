"""The application layer: command line, run orchestration, data loading, logging."""
