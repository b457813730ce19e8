"""Sections of the ``monge demo`` report, one module per capability (each returns a :class:`monge.cli.report.Section`)."""
