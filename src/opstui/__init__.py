"""opstui: a live, RLS-scoped terminal dashboard for SREs."""

__version__ = "0.1.0"
