"""The report's sections, one module per group: each ``<name>_section(r, out)`` loads the records it
needs and returns ``{"findings", "figures", "raw", ...}`` for the template (or ``None``: left out).
:func:`cnnlens.report.html.build_report` calls them in page order."""
