"""Figures (matplotlib) and the HTML report (Jinja2): the only place that draws."""
