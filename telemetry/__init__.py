"""What a run writes about itself: its log and trace files, and the redactor every byte passes.

A floor below agents, backends, graph and drpo (it imports only the standard library, structlog
and schemas), so every module can log through `telemetry.logs.get_logger` without an import
that runs back up."""
